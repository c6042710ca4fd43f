"""Padded steps (beyond ``lengths``) and torch.compile with lengths (issue 13, items 3 and 4)."""

from __future__ import annotations

import pytest
import torch

from minrnn import MinGRU, MinLSTM
from minrnn import functional as F

BACKENDS = [b for b in ("cpu", "torch", "log", "sequential") if b in F.available_backends(torch.zeros(1))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_garbage_in_padding_reaches_no_output_and_no_gradient(cls, backend, bad):
    B, T, D, H = 3, 7, 5, 4
    rnn = cls(D, H, num_layers=2, bidirectional=True, batch_first=True, backend=backend)
    lengths = torch.tensor([T, 4, 1])
    mask = torch.arange(T) < lengths.unsqueeze(1)
    clean = torch.randn(B, T, D)
    clean = torch.where(mask.unsqueeze(-1), clean, 0.0)
    dirty = torch.where(mask.unsqueeze(-1), clean, torch.full_like(clean, bad))
    h0 = torch.randn(2 * 2, B, H)
    hx = (h0, h0) if cls is MinLSTM else h0
    grad = torch.randn(B, T, 2 * H)

    results = []
    for x in (clean, dirty):
        x = x.clone().requires_grad_()
        rnn.zero_grad(set_to_none=True)
        out, h_n = rnn(x, hx, lengths=lengths)
        h_n = h_n[0] if cls is MinLSTM else h_n
        (out * grad).sum().add(h_n.sum()).backward()
        results.append((out.detach(), h_n.detach(), x.grad, [p.grad.clone() for p in rnn.parameters()]))
    (out_c, hn_c, xg_c, pg_c), (out_d, hn_d, xg_d, pg_d) = results
    assert torch.isfinite(out_d).all()
    torch.testing.assert_close(out_d, out_c, rtol=0, atol=0)
    torch.testing.assert_close(hn_d, hn_c, rtol=0, atol=0)
    torch.testing.assert_close(xg_d, xg_c, rtol=0, atol=0)
    assert (xg_d[~mask] == 0).all()
    for g_d, g_c in zip(pg_d, pg_c):
        assert torch.isfinite(g_d).all()
        torch.testing.assert_close(g_d, g_c, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_compile_fullgraph(cls, with_lengths):
    torch._dynamo.reset()
    B, T, D, H = 3, 6, 5, 4
    rnn = cls(D, H, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(B, T, D, requires_grad=True)
    lengths = torch.tensor([T, 3, 1]) if with_lengths else None
    compiled = torch.compile(rnn, fullgraph=True, backend="eager")
    out, _ = compiled(x, lengths=lengths)
    ref, _ = rnn(x, lengths=lengths)
    torch.testing.assert_close(out, ref)
    (g,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(g, g_ref)


def test_compile_fullgraph_follows_use_backend():
    # The backend a compiled call runs is the one in effect at the call, not at compile time.
    torch._dynamo.reset()
    rnn = MinGRU(4, 4, batch_first=True)
    x = torch.randn(2, 5, 4)
    compiled = torch.compile(rnn, fullgraph=True, backend="eager")
    calls = []
    orig = F._BACKENDS["torch"]
    counting = F.Backend("torch", lambda *a: calls.append(1) or orig.scan(*a))
    try:
        F.register_backend(counting)
        out_auto, _ = compiled(x)
        with F.use_backend("torch"):
            out_torch, _ = compiled(x)
    finally:
        F.register_backend(orig)
    assert calls, "use_backend('torch') was ignored by the compiled module"
    torch.testing.assert_close(out_auto, out_torch)


def test_bad_lengths_still_caught_in_eager_mode():
    rnn = MinGRU(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=5\]"):
        rnn(torch.randn(2, 5, 3), lengths=torch.tensor([5, 6]))
