"""MinGRU / MinLSTM layers: against a per-sequence float64 reference, step mode, nn.GRU interface."""

import pytest
import torch
from torch import nn

from minrnn import MinGRU, MinLSTM
from minrnn.ops.activations import min_gru_coeffs, min_lstm_coeffs
from minrnn.ops.reference import sequential_scan
from tests.helpers import rel_err

CELLS = {"mingru": MinGRU, "minlstm": MinLSTM}


def hn(state):
    """h_n of a layer's state: MinLSTM returns nn.LSTM's pair, whose c_n is h_n itself."""
    if isinstance(state, tuple):
        h, c = state
        assert h is c
        return h
    return state


def reference_layer(rnn, x, h0=None, lengths=None):
    """Run each sequence on its own (unpadded, reversed by hand), in float64, from rnn's weights.

    x: (B, T, I) batch-first. Returns output (B, T, D*H) with zeros past each length and h_n.
    """
    B, T, _ = x.shape
    lengths = [T] * B if lengths is None else [int(n) for n in lengths]
    D, H = rnn.num_directions, rnn.hidden_size
    out = torch.zeros(B, T, D * H, dtype=torch.float64)
    h_n = torch.zeros(rnn.num_layers * D, B, H, dtype=torch.float64)
    for b in range(B):
        seq = x[b : b + 1, : lengths[b]].double()
        for layer in range(rnn.num_layers):
            outs = []
            for d in range(D):
                k = layer * D + d
                lin = rnn.proj[k]
                inp = seq.flip(1) if d == 1 else seq
                pre = inp @ lin.weight.double().T + (lin.bias.double() if lin.bias is not None else 0)
                coeffs = min_gru_coeffs if isinstance(rnn, MinGRU) else min_lstm_coeffs
                a, bb = coeffs(*pre.chunk(rnn.n_proj, dim=-1), rnn.activation)
                h = sequential_scan(a, bb, None if h0 is None else h0[k, b : b + 1].double())
                h_n[k, b] = h[0, -1]
                outs.append(h.flip(1) if d == 1 else h)
            seq = torch.cat(outs, dim=-1)
        out[b, : lengths[b]] = seq[0]
    return out, h_n


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_layer_matches_reference(cell, num_layers, bidirectional, with_h0, with_lengths):
    B, T, I, H = 3, 11, 5, 7
    rnn = CELLS[cell](I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    x = torch.randn(B, T, I)
    L = num_layers * rnn.num_directions
    h0 = torch.randn(L, B, H) if with_h0 else None
    lengths = torch.tensor([T, 4, 1]) if with_lengths else None
    out, h_n = rnn(x, h0, lengths=lengths)
    h_n = hn(h_n)
    ref_out, ref_hn = reference_layer(rnn, x, h0, lengths)
    assert out.shape == (B, T, rnn.num_directions * H) and h_n.shape == (L, B, H)
    assert rel_err(out, ref_out) < 1e-5
    assert rel_err(h_n, ref_hn) < 1e-5


@pytest.mark.parametrize("cell", CELLS)
def test_layer_gradients_match_reference(cell):
    B, T, I, H = 2, 9, 4, 5
    rnn = CELLS[cell](I, H, num_layers=2, bidirectional=True, batch_first=True).double()
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, B, H, dtype=torch.float64, requires_grad=True)
    lengths = [T, 5]
    out, h_n = rnn(x, h0, lengths=lengths)
    h_n = hn(h_n)
    ref_out, ref_hn = reference_layer(rnn, x, h0, lengths)
    w_out, w_hn = torch.randn_like(ref_out), torch.randn_like(ref_hn)
    leaves = [x, h0, *rnn.parameters()]
    got = torch.autograd.grad((out * w_out).sum() + (h_n * w_hn).sum(), leaves)
    want = torch.autograd.grad((ref_out * w_out).sum() + (ref_hn * w_hn).sum(), leaves)
    for g, w in zip(got, want):
        assert rel_err(g, w) < 1e-10


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("T", [1, 7, 300])
def test_step_mode_equals_parallel_mode(cell, with_h0, T):
    B, I, H, L = 3, 6, 8, 3
    rnn = CELLS[cell](I, H, num_layers=L, batch_first=True).eval()
    x = torch.randn(B, T, I)
    h0 = torch.randn(L, B, H) if with_h0 else None
    out, h_n = rnn(x, h0)
    state, steps = h0, []
    for x_t in x.unbind(1):
        y, state = rnn.step(x_t, state)
        steps.append(y)
    assert (torch.stack(steps, 1) - out).abs().max() < 1e-5
    assert (hn(state) - hn(h_n)).abs().max() < 1e-5


@pytest.mark.parametrize("cell", CELLS)
def test_outputs_past_length_are_zero_and_hn_is_last_real_state(cell):
    rnn = CELLS[cell](4, 5, batch_first=True)
    x = torch.randn(3, 10, 4)
    lengths = torch.tensor([10, 6, 2])
    out, h_n = rnn(x, lengths=lengths)
    h_n = hn(h_n)
    for b, n in enumerate(lengths.tolist()):
        assert (out[b, n:] == 0).all()
        assert torch.equal(h_n[0, b], out[b, n - 1])
        # padding content must not matter
        alone, _ = rnn(x[b : b + 1, :n])
        assert (alone[0] - out[b, :n]).abs().max() < 1e-6


def _shapes(state):
    return tuple(t.shape for t in state) if isinstance(state, tuple) else state.shape


@pytest.mark.parametrize("cell,torch_cls", [("mingru", nn.GRU), ("minlstm", nn.LSTM)])
@pytest.mark.parametrize("batch_first", [True, False, None])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_same_shapes_as_torch(cell, torch_cls, batch_first, bidirectional):
    kwargs = dict(num_layers=2, bias=True, dropout=0.0, bidirectional=bidirectional)
    if batch_first is not None:  # None: both modules' defaults
        kwargs["batch_first"] = batch_first
    ours, theirs = CELLS[cell](5, 6, **kwargs), torch_cls(5, 6, **kwargs)
    assert ours.batch_first == theirs.batch_first
    x = torch.randn(3, 4, 5)
    batch = x.shape[0] if ours.batch_first else x.shape[1]
    h0 = torch.randn(2 * (2 if bidirectional else 1), batch, 6)
    h0 = (h0, h0) if torch_cls is nn.LSTM else h0
    for args in [(x,), (x, h0)]:
        (o1, h1), (o2, h2) = ours(*args), theirs(*args)
        assert o1.shape == o2.shape and _shapes(h1) == _shapes(h2)
    (o1, h1), (o2, h2) = ours(x, hx=h0), theirs(x, hx=h0)  # the keyword nn.GRU / nn.LSTM use
    assert o1.shape == o2.shape and _shapes(h1) == _shapes(h2)
    # unbatched input, as nn.GRU accepts it
    (o1, h1), (o2, h2) = ours(x[0]), theirs(x[0])
    assert o1.shape == o2.shape and _shapes(h1) == _shapes(h2)


def test_default_layout_is_time_first_like_nn_gru():
    # Without batch_first, (T, B, I) input: the recurrence runs over dim 0, as nn.GRU's does.
    rnn = MinGRU(3, 4)
    x = torch.randn(6, 2, 3)  # T=6, B=2
    out, h_n = rnn(x)
    alone, _ = rnn(x[:, 1:2])  # batch row 1 on its own
    torch.testing.assert_close(out[:, 1:2], alone)
    torch.testing.assert_close(h_n[0, 1], out[-1, 1])
    with pytest.raises(ValueError, match=r"laid out as \(T, B, input_size\) \(batch_first=False"):
        rnn(torch.randn(2, 6, 3), torch.zeros(1, 2, 4))  # a batch-first tensor with its h0


def test_minlstm_takes_and_returns_the_lstm_pair():
    rnn = MinLSTM(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    out, (h_n, c_n) = rnn(x)
    assert h_n is c_n and h_n.shape == (2, 2, 4)
    out2, (h2, c2) = rnn(x, (h_n, c_n))  # the pair passes from call to call, as truncated BPTT does
    torch.testing.assert_close(out2, rnn(x, h_n)[0])  # a single tensor works too
    zeros = torch.zeros(2, 2, 4)
    torch.testing.assert_close(rnn(x, (zeros, zeros.clone()))[0], out)  # equal h0 and c0: fine
    with pytest.raises(ValueError, match="h_0 and c_0 must be equal"):
        rnn(x, (zeros, torch.ones(2, 2, 4)))
    with pytest.raises(ValueError, match="pair"):
        rnn(x, (zeros,))
    y, (h, c) = rnn.step(x[0], (h_n, c_n))
    assert h is c and torch.equal(y, h[-1])


def test_batch_first_false_matches_batch_first_true():
    a = MinGRU(3, 4, batch_first=True)
    b = MinGRU(3, 4, batch_first=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 5, 3)
    assert torch.allclose(a(x)[0], b(x.transpose(0, 1))[0].transpose(0, 1))


def test_dropout_only_in_training():
    rnn = MinGRU(3, 16, num_layers=2, dropout=0.5, batch_first=True)
    x = torch.randn(2, 5, 3)
    rnn.eval()
    assert torch.equal(rnn(x)[0], rnn(x)[0])
    rnn.train()
    assert not torch.equal(rnn(x)[0], rnn(x)[0])


def test_bad_layer_inputs_raise_clear_errors():
    rnn = MinGRU(4, 5, num_layers=2, batch_first=True)
    x = torch.randn(3, 6, 4)
    cases = [
        (lambda: rnn(torch.randn(3, 6, 5)), "feature size 5, expected input_size=4"),
        (lambda: rnn(torch.randn(1, 3, 6, 4)), "4 dims"),
        (lambda: rnn(x.long()), "floating-point"),
        (lambda: rnn(torch.randn(3, 0, 4)), "T = 0"),
        (lambda: rnn(x, torch.randn(1, 3, 5)), r"h0 has shape \(1, 3, 5\), expected .* = \(2, 3, 5\)"),
        (lambda: rnn(x, lengths=[6, 7, 1]), r"lengths must lie in \[1, T=6\]"),
        (lambda: rnn(x, lengths=[6, 0, 1]), r"lengths must lie in \[1, T=6\]"),
        (lambda: rnn(x, lengths=[6, 2]), r"shape \(B,\) = \(3,\)"),
        (lambda: rnn(x, lengths=torch.tensor([6, 2, 1], device="meta")), "lengths is on meta"),
        (lambda: rnn.step(torch.randn(3, 5)), r"\(B, input_size=4\)"),
        (lambda: rnn.step(torch.randn(3, 4), torch.zeros(1, 3, 5)), "state has shape"),
        (lambda: MinGRU(4, 5, bidirectional=True).step(torch.randn(3, 4)), "bidirectional"),
        (lambda: MinGRU(0, 5), "input_size must be a positive int"),
        (lambda: MinGRU(4, 5, dropout=1.5), "dropout"),
    ]
    for fn, message in cases:
        with pytest.raises(ValueError, match=message):
            fn()
