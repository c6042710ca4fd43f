"""Functional ops against the float64 sequential reference, on every backend."""

import pytest
import torch

from minrnn import functional as F
from minrnn.ops.reference import heinsen_scan, sequential_scan
from tests.helpers import make_h0, random_mask, ref_min_gru, ref_min_lstm, rel_err

BACKENDS = ["auto", "torch", "log"]
SHAPES = [(1, 1, 1), (2, 1, 5), (3, 37, 7), (2, 64, 4), (4, 1000, 3)]


# The log-space baseline loses float32 accuracy as |cumsum(log a)| grows (paper's known weak point).
VALUE_TOL = {"log": 1e-2}


def _backend(name):
    return None if name == "auto" else name


def _inputs(n, shape, dtype=torch.float32, scale=2.0):
    return [(torch.randn(shape, dtype=dtype) * scale).requires_grad_() for _ in range(n)]


def _check_grads(out, ref, inputs, h0, tol):
    g = torch.randn_like(ref)
    leaves = [*inputs] + ([h0] if h0 is not None else [])
    got = torch.autograd.grad(out, leaves, g.to(out.dtype))
    want = torch.autograd.grad(ref, leaves, g)
    for x, y in zip(got, want):
        assert rel_err(x, y) < tol


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("h0_kind", [None, "pos", "neg"])
@pytest.mark.parametrize("use_mask", [False, True])
def test_min_gru_matches_reference(backend, shape, h0_kind, use_mask):
    B, T, H = shape
    gate, cand = _inputs(2, shape)
    h0 = make_h0(h0_kind, B, H)
    if h0 is not None:
        h0.requires_grad_()
    mask = random_mask(B, T) if use_mask else None
    out = F.min_gru(gate, cand, h0, mask, backend=_backend(backend))
    ref = ref_min_gru(gate, cand, h0, mask)
    assert out.dtype == torch.float32 and out.shape == shape
    assert rel_err(out, ref) < VALUE_TOL.get(backend, 1e-5)
    _check_grads(out, ref, [gate, cand], h0, VALUE_TOL.get(backend, 1e-4))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("h0_kind", [None, "neg"])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("activation", ["g", "identity"])
def test_min_lstm_matches_reference(backend, shape, h0_kind, use_mask, activation):
    B, T, H = shape
    f, i, c = _inputs(3, shape)
    h0 = make_h0(h0_kind, B, H)
    if h0 is not None:
        h0.requires_grad_()
    mask = random_mask(B, T) if use_mask else None
    out = F.min_lstm(f, i, c, h0, mask, activation=activation, backend=_backend(backend))
    ref = ref_min_lstm(f, i, c, h0, mask, activation)
    assert rel_err(out, ref) < VALUE_TOL.get(backend, 1e-5)
    _check_grads(out, ref, [f, i, c], h0, VALUE_TOL.get(backend, 1e-4))


@pytest.mark.parametrize("activation", ["g", "identity"])
def test_min_gru_identity_activation(activation):
    gate, cand = _inputs(2, (2, 19, 5))
    out = F.min_gru(gate, cand, activation=activation)
    assert rel_err(out, ref_min_gru(gate, cand, activation=activation)) < 1e-5


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("h0_kind", [None, "any"])
def test_linear_scan_any_sign(backend, h0_kind):
    # a of both signs and exact zeros: only linear-space backends support this
    B, T, H = 3, 129, 6
    a = (torch.rand(B, T, H) * 2 - 1).requires_grad_()
    with torch.no_grad():
        a[:, 5] = 0.0
    b = torch.randn(B, T, H, requires_grad=True)
    h0 = make_h0(h0_kind, B, H)
    if h0 is not None:
        h0.requires_grad_()
    out = F.linear_scan(a, b, h0, backend=_backend(backend))
    ref = sequential_scan(a.double(), b.double(), None if h0 is None else h0.double())
    assert rel_err(out, ref) < 1e-5
    _check_grads(out, ref, [a, b], h0, 1e-4)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_long_sequence_values_and_grads(backend):
    B, T, H = 2, 4100, 3  # T >= 4096, not a multiple of the chunk length
    gate, cand = _inputs(2, (B, T, H))
    h0 = make_h0("neg", B, H).requires_grad_()
    mask = random_mask(B, T)
    out = F.min_gru(gate, cand, h0, mask, backend=_backend(backend))
    ref = ref_min_gru(gate, cand, h0, mask)
    assert rel_err(out, ref) < 1e-5
    _check_grads(out, ref, [gate, cand], h0, 1e-4)


def test_float32_error_stays_small_at_long_T():
    # Gates near 0.5 are where the paper's log-space scan loses accuracy (|cumsum log a| grows).
    B, T, H = 2, 16384, 4
    gate = torch.randn(B, T, H) * 0.1
    cand = torch.randn(B, T, H)
    out = F.min_gru(gate, cand)
    assert rel_err(out, ref_min_gru(gate, cand)) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["gru", "lstm"])
def test_saturated_gates_stay_finite(backend, op):
    B, T, H = 2, 50, 4
    sign = torch.where(torch.rand(B, T, H) > 0.5, 1.0, -1.0)
    gates = [(30.0 * sign).requires_grad_(), (-30.0 * sign).requires_grad_()]
    cand = torch.randn(B, T, H, requires_grad=True)
    h0 = torch.zeros(B, H, requires_grad=True)
    if op == "gru":
        out = F.min_gru(gates[0], cand, h0, backend=_backend(backend))
        ref = ref_min_gru(gates[0], cand, h0)
    else:
        out = F.min_lstm(gates[0], gates[1], cand, h0, backend=_backend(backend))
        ref = ref_min_lstm(gates[0], gates[1], cand, h0)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(t.grad).all() for t in [gates[0], cand, h0])
    assert rel_err(out, ref) < VALUE_TOL.get(backend, 1e-5)


def test_min_lstm_both_gates_underflow():
    # sigma(f) and sigma(i) both underflow to 0 in float32: the naive ratio would be 0/0.
    f = torch.full((1, 4, 2), -200.0, requires_grad=True)
    i = torch.full((1, 4, 2), -150.0, requires_grad=True)
    c = torch.randn(1, 4, 2)
    out = F.min_lstm(f, i, c)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(f.grad).all()


def test_heinsen_scan_matches_sequential():
    B, T, H = 2, 300, 5
    log_a = -torch.rand(B, T, H, dtype=torch.float64) * 3
    b = torch.randn(B, T, H, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    ref = sequential_scan(log_a.exp(), b, h0)
    assert rel_err(heinsen_scan(log_a, b, h0), ref) < 1e-10


@pytest.mark.parametrize("op", ["gru", "lstm", "scan"])
def test_gradcheck_float64(op):
    B, T, H = 2, 13, 3
    dt = torch.float64
    xs = [torch.randn(B, T, H, dtype=dt, requires_grad=True) for _ in range(3)]
    h0 = torch.randn(B, H, dtype=dt, requires_grad=True)
    mask = random_mask(B, T)
    if op == "gru":
        fn, args = (lambda g, c, h: F.min_gru(g, c, h, mask)), (xs[0], xs[1], h0)
    elif op == "lstm":
        fn, args = (lambda f, i, c, h: F.min_lstm(f, i, c, h, mask)), (*xs, h0)
    else:
        a = torch.rand(B, T, H, dtype=dt, requires_grad=True)
        fn, args = F.linear_scan, (a, xs[0], h0)
    assert torch.autograd.gradcheck(fn, args)


def test_half_precision_inputs_accumulate_in_float32():
    gate, cand = (torch.randn(2, 300, 8) for _ in range(2))
    out = F.min_gru(gate.bfloat16(), cand.bfloat16())
    assert out.dtype == torch.bfloat16
    ref = ref_min_gru(gate.bfloat16(), cand.bfloat16())
    assert rel_err(out, ref) < 1e-2  # bf16 output rounding only


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors():
    x = torch.randn(2, 5, 3)
    cases = [
        (lambda: F.min_gru(torch.randn(5, 3), torch.randn(5, 3)), "(B, T, H)"),
        (lambda: F.min_gru(x, torch.randn(2, 5, 4)), "expected (2, 5, 3)"),
        (lambda: F.min_gru(x, x, torch.randn(2, 4)), "h0 has shape (2, 4), expected (B, H) = (2, 3)"),
        (lambda: F.min_gru(x, x, torch.randn(1, 2, 3)), "h0 has shape"),
        (lambda: F.min_gru(x, x, mask=torch.ones(2, 4, dtype=torch.bool)), "mask has shape (2, 4), expected (B, T) = (2, 5)"),
        (lambda: F.min_gru(x, x, mask=torch.ones(2, 5)), "mask must be a bool tensor"),
        (lambda: F.min_gru(x.long(), x.long()), "floating-point"),
        (lambda: F.min_gru(torch.randn(2, 0, 3), torch.randn(2, 0, 3)), "T = 0"),
        (lambda: F.min_gru(x, x, activation="relu"), "activation must be one of"),
        (lambda: F.min_gru(x, x, backend="nope"), "unknown backend"),
        (lambda: F.min_lstm(x, x, torch.randn(2, 6, 3)), "cand has shape"),
        (lambda: F.linear_scan(x, torch.randn(3, 5, 3)), "b has shape"),
        (lambda: F.min_gru(x, x.to("meta")), "is on meta"),
    ]
    for fn, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            fn()


def test_set_backend_and_get_backend():
    x = torch.randn(1, 3, 2)
    try:
        F.set_backend("log")
        assert F.get_backend(x).name == "log"
        with pytest.raises(ValueError, match="unknown backend"):
            F.set_backend("nope")
    finally:
        F.set_backend(None)
    assert F.get_backend(x).name in F.available_backends()


def test_use_backend_is_scoped_to_its_block_and_thread():
    import threading

    x = torch.randn(1, 3, 2)
    auto = F.get_backend(x).name
    with F.use_backend("log"):
        assert F.get_backend(x).name == "log"
        seen = []
        other = threading.Thread(target=lambda: seen.append(F.get_backend(x).name))
        other.start()
        other.join()
        assert seen == [auto]  # another thread keeps automatic selection
    assert F.get_backend(x).name == auto

    def set_in_thread():
        F.set_backend("sequential")
        seen.append(F.get_backend(x).name)

    seen.clear()
    worker = threading.Thread(target=set_in_thread)
    worker.start()
    worker.join()
    assert seen == ["sequential"] and F.get_backend(x).name == auto  # set_backend stayed in its thread


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_backend_that_cannot_run_here_is_refused():
    from minrnn import MinGRU

    for call in (lambda: F.set_backend("triton"), lambda: F.use_backend("triton").__enter__(), lambda: MinGRU(2, 3, backend="triton")):
        with pytest.raises(ValueError, match="cannot run on this machine"):
            call()


def test_set_backend_on_a_model_sets_every_layer():
    from minrnn import LMConfig, MinRNNLM
    from minrnn.layers import set_backend

    model = MinRNNLM(LMConfig(vocab_size=5, d_model=4, n_layers=2, expansion=1.0))
    assert set_backend(model, "torch") is model
    assert [b.rnn.backend for b in model.blocks] == ["torch", "torch"]
    with pytest.raises(ValueError, match="unknown backend"):
        set_backend(model, "nope")
