"""NaN and Inf in the ops, on every backend (issue 13, items 2-3).

A NaN in any pre-activation must come out as NaN exactly where the maths (the float64 sequential
reference) has one, in the output and in every gradient: no min/max/where in a fused kernel may
swallow it. NaN/Inf at masked (padded) steps must reach no output and no gradient.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from minrnn import functional as F
from tests.helpers import reference

N_INPUTS = {"gru": 2, "lstm": 3}
HAS_TRITON = importlib.util.find_spec("triton") is not None
# NaN/Inf arithmetic is the point here; numpy (the triton interpreter) warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
BACKENDS = [b for b in ("cpu", "torch", "log", "sequential") if b in F.available_backends(torch.zeros(1))]


def _triton():
    """The Triton kernels on CPU tensors (interpreter) or None; as tests/test_scan_triton.py does."""
    if not HAS_TRITON or torch.cuda.is_available():
        return None
    from minrnn.ops import scan_triton

    return scan_triton if scan_triton._interpreting() else None


def run(backend, op, xs, h0=None, mask=None):
    if backend == "triton":
        st = _triton()
        if st is None:
            pytest.skip("triton not installed, or imported before TRITON_INTERPRET=1 was set")
        return (st.min_gru if op == "gru" else st.min_lstm)(*xs, h0, mask)
    return (F.min_gru if op == "gru" else F.min_lstm)(*xs, h0, mask, backend=backend)


def _leaves(op, B, T, H):
    xs = [torch.randn(B, T, H) for _ in range(N_INPUTS[op])]
    h0 = torch.randn(B, H)
    return xs, h0


@pytest.mark.parametrize("backend", BACKENDS + ["triton"])
@pytest.mark.parametrize("op, which", [("gru", 0), ("gru", 1), ("lstm", 0), ("lstm", 1), ("lstm", 2)])
def test_nan_in_one_preactivation_propagates_like_the_maths(backend, op, which):
    B, T, H = 2, 6, 3
    xs, h0 = _leaves(op, B, T, H)
    xs[which][0, 2, 1] = float("nan")
    leaves = [x.requires_grad_() for x in xs + [h0]]
    leaves64 = [x.detach().double().requires_grad_() for x in leaves]
    out = run(backend, op, leaves[:-1], leaves[-1])
    ref = reference(op, leaves64[:-1], leaves64[-1])
    assert torch.isnan(ref).any() and torch.isfinite(ref).any()  # the case is not degenerate
    assert torch.equal(torch.isnan(out), torch.isnan(ref)), f"NaN pattern {torch.isnan(out)} vs {torch.isnan(ref)}"
    ok = ~torch.isnan(ref)
    torch.testing.assert_close(out.double()[ok], ref[ok], rtol=1e-4, atol=1e-5)

    w = torch.randn(B, T, H, dtype=torch.float64)
    grads = torch.autograd.grad((out * w.float()).sum(), leaves)
    grads64 = torch.autograd.grad((ref * w).sum(), leaves64)
    for name, g, r in zip([*"xyz"[: len(xs)], "h0"], grads, grads64):
        if backend == "log":  # log-space: NaN may spread further (logcumsumexp), but never vanish
            assert torch.isnan(g)[torch.isnan(r)].all(), name
        else:
            assert torch.equal(torch.isnan(g), torch.isnan(r)), f"{name}: {torch.isnan(g)} vs {torch.isnan(r)}"
            ok = ~torch.isnan(r)
            torch.testing.assert_close(g.double()[ok], r[ok], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS + ["triton"])
def test_nan_gate_weights_give_nan_output(backend):
    # issue 13: a MinLSTM whose input-gate weights are NaN gave finite output on CPU.
    B, T, H = 2, 5, 4
    f, i, c = (torch.randn(B, T, H) for _ in range(3))
    for k in range(3):
        xs = [f.clone(), i.clone(), c.clone()]
        xs[k][..., 1] = float("nan")  # one hidden unit's pre-activation is NaN at every step
        out = run(backend, "lstm", xs)
        assert torch.isnan(out[..., 1]).all() and torch.isfinite(out[..., [0, 2, 3]]).all()


@pytest.mark.parametrize("backend", BACKENDS + ["triton"])
@pytest.mark.parametrize("op", ["gru", "lstm"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_at_masked_steps_reaches_nothing(backend, op, bad):
    B, T, H = 3, 7, 4
    xs, h0 = _leaves(op, B, T, H)
    mask = torch.rand(B, T) > 0.4
    mask[:, 0] = False
    mask[1, 3] = True
    dirty = [torch.where(mask.unsqueeze(-1), x, torch.full_like(x, bad)) for x in xs]
    w = torch.randn(B, T, H)
    res = []
    for inputs in (xs, dirty):
        leaves = [x.clone().requires_grad_() for x in inputs + [h0]]
        out = run(backend, op, leaves[:-1], leaves[-1], mask)
        res.append((out, torch.autograd.grad((out * w).sum(), leaves)))
    (out_c, g_c), (out_d, g_d) = res
    torch.testing.assert_close(out_d, out_c, rtol=0, atol=0)
    for a, b in zip(g_d, g_c):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for g in g_d[:-1]:
        assert (g[~mask] == 0).all()  # masked steps pass no gradient
