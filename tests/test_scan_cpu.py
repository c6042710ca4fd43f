"""The fused CPU kernels (minrnn.ops.scan_cpu) against the float64 sequential reference."""

import os
import subprocess
import sys
import threading
import warnings

import pytest
import torch

from minrnn import MinGRU, MinLSTM, functional as F
from tests.helpers import reference

scan_cpu = pytest.importorskip("minrnn.ops.scan_cpu")

# Inputs and their reference, per op: n pre-activations -> (a, b) in float64.
N_INPUTS = {"scan": 2, "gru": 2, "lstm": 3}


def make_inputs(op, B, T, H, dtype=torch.float32, scale=1.0):
    """Pre-activations as the layers produce them: chunks (non-contiguous views) of one tensor."""
    pre = (scale * torch.randn(B, T, N_INPUTS[op] * H, dtype=torch.float64)).to(dtype).requires_grad_()
    xs = list(pre.chunk(N_INPUTS[op], dim=-1))
    if op == "scan":  # a decay in (0, 1) as a view as well, b of any sign
        xs[0] = torch.sigmoid(xs[0])
    return pre, xs


def make_h0(kind, B, H, dtype=torch.float32):
    if kind is None:
        return None
    h0 = torch.rand(B, H, dtype=torch.float64) + 0.5
    return (h0 if kind == "pos" else -h0).to(dtype).requires_grad_()


def make_mask(B, T):
    mask = torch.rand(B, T) > 0.3
    mask[0, 0] = False  # a padded first step exercises h0 pass-through
    return mask


def run(op, xs, h0, mask, activation, backend="cpu"):
    if op == "scan":
        return F.linear_scan(*xs, h0, backend=backend)
    fn = F.min_gru if op == "gru" else F.min_lstm
    return fn(*xs, h0, mask, activation=activation, backend=backend)


def check_against_reference(op, B, T, H, h0_kind=None, masked=False, activation="g", dtype=torch.float32,
                            scale=1.0, rtol=1e-4, atol=1e-5, loss="weighted"):  # fmt: skip
    pre, xs = make_inputs(op, B, T, H, dtype, scale)
    h0 = make_h0(h0_kind, B, H, dtype)
    mask = make_mask(B, T) if masked and op != "scan" else None
    leaves = [pre] + ([h0] if h0 is not None else [])

    out = run(op, xs, h0, mask, activation)
    assert out.dtype == dtype and out.shape == (B, T, H)
    ref = reference(op, xs, h0, mask, activation)
    torch.testing.assert_close(out.double(), ref, rtol=rtol, atol=atol)

    w = torch.randn(B, T, H, dtype=torch.float64)
    if loss == "sum":  # grad_h arrives as an expanded (stride 0) tensor
        grads = torch.autograd.grad(out.sum(), leaves, retain_graph=True)
    else:
        grads = torch.autograd.grad((out * w.to(dtype)).sum(), leaves, retain_graph=True)
    ref_grads = torch.autograd.grad((ref * w).sum() if loss != "sum" else ref.sum(), leaves)
    for g, r in zip(grads, ref_grads):
        assert g.dtype == dtype and torch.isfinite(g).all()
        torch.testing.assert_close(g.double(), r.double(), rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- values and gradients


def test_cpu_backend_is_picked_automatically():
    assert F.get_backend(torch.zeros(1, 1, 1)).name == "cpu"


@pytest.mark.parametrize("op", ["gru", "lstm"])
@pytest.mark.parametrize("activation", ["g", "identity"])
@pytest.mark.parametrize("h0_kind", [None, "pos", "neg"])
@pytest.mark.parametrize("masked", [False, True])
def test_cells_match_reference(op, activation, h0_kind, masked):
    check_against_reference(op, 3, 37, 5, h0_kind, masked, activation)


@pytest.mark.parametrize("h0_kind", [None, "pos", "neg"])
@pytest.mark.parametrize("T", [1, 37])
def test_linear_scan_matches_reference(h0_kind, T):
    check_against_reference("scan", 3, T, 5, h0_kind)


@pytest.mark.parametrize("op", ["scan", "gru", "lstm"])
@pytest.mark.parametrize("B, T, H", [(1, 1, 1), (2, 1, 7), (1, 1000, 100), (5, 1000, 3)])
def test_shapes(op, B, T, H):
    # B = 1 with H = 100 splits the hidden units into several lanes per row.
    check_against_reference(op, B, T, H, "neg", masked=True)


@pytest.mark.parametrize("op", ["scan", "gru", "lstm"])
def test_long_sequence(op):
    check_against_reference(op, 2, 4096, 3, "pos", masked=True)


@pytest.mark.parametrize("op", ["scan", "gru", "lstm"])
def test_float64_is_exact(op):
    check_against_reference(op, 2, 300, 4, "neg", masked=True, dtype=torch.float64, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("op", ["scan", "gru", "lstm"])
def test_sum_loss_expanded_grad(op):
    check_against_reference(op, 2, 50, 6, "pos", loss="sum")


def test_broadcast_inputs():
    # Expanded (stride 0) B or T dims are read in place, not materialized.
    B, T, H = 3, 40, 5
    a0 = torch.rand(B, 1, H, requires_grad=True)
    b0 = torch.randn(1, T, H, requires_grad=True)
    xs = [a0.expand(B, T, H), b0.expand(B, T, H)]
    out = run("scan", xs, None, None, "g")
    ref = reference("scan", xs, None, None, "g")
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)
    w = torch.randn(B, T, H, dtype=torch.float64)
    grads = torch.autograd.grad((out * w.float()).sum(), [a0, b0])
    for g, r in zip(grads, torch.autograd.grad((ref * w).sum(), [a0, b0])):
        torch.testing.assert_close(g.double(), r.double(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["gru", "lstm"])
def test_saturated_gates_stay_finite(op):
    # Pre-activations of +-30 (and +-100 below): sigmoid saturates, exp would overflow if naive.
    check_against_reference(op, 2, 64, 8, "neg", masked=True, scale=30.0, rtol=1e-4, atol=1e-4)


def test_min_lstm_both_gates_underflow():
    f = torch.full((1, 3, 2), -120.0, requires_grad=True)
    i = torch.full((1, 3, 2), -100.0, requires_grad=True)
    c = torch.randn(1, 3, 2, requires_grad=True)
    out = F.min_lstm(f, i, c, backend="cpu")
    ref = reference("lstm", [f, i, c], None, None, "g")
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (f, i, c))


@pytest.mark.parametrize("op", ["gru", "lstm"])
def test_nan_input_propagates(op):
    # A NaN must not be hidden by the clamp inside the fast exp.
    _, xs = make_inputs(op, 1, 4, 3)
    xs = [x.detach().clone() for x in xs]
    xs[0][0, 1, 1] = float("nan")
    out = run(op, xs, None, None, "g")
    assert torch.isnan(out[0, 1:, 1]).all() and torch.isfinite(out[0, 0]).all() and torch.isfinite(out[:, :, 0]).all()


@pytest.mark.parametrize("op", ["scan", "gru", "lstm"])
def test_inputs_with_strided_hidden_dim(op):
    # H stride != 1 (a transpose): the kernel copies such inputs instead of reading them in place.
    B, T, H = 2, 20, 6
    xs = [torch.randn(B, H, T, requires_grad=True) for _ in range(N_INPUTS[op])]
    views = [x.transpose(1, 2) for x in xs]
    if op == "scan":
        views[0] = torch.sigmoid(views[0])
    out = run(op, views, None, None, "g")
    ref = reference(op, views, None, None, "g")
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)
    w = torch.randn(B, T, H, dtype=torch.float64)
    grads = torch.autograd.grad((out * w.float()).sum(), xs, retain_graph=True)  # the sigmoid is shared
    for g, r in zip(grads, torch.autograd.grad((ref * w).sum(), xs)):
        torch.testing.assert_close(g.double(), r.double(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("op", ["scan", "gru", "lstm"])
def test_half_precision_inputs(op, dtype):
    # Computed in float32 from the rounded inputs: only the output's rounding differs.
    pre, xs = make_inputs(op, 2, 100, 8, dtype)
    h0 = make_h0("neg", 2, 8, dtype)
    mask = make_mask(2, 100) if op != "scan" else None
    out = run(op, xs, h0, mask, "g")
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), reference(op, xs, h0, mask, "g"), rtol=1e-2, atol=1e-2)
    out.float().sum().backward()
    assert pre.grad.dtype == dtype and h0.grad.dtype == dtype
    assert torch.isfinite(pre.grad).all() and torch.isfinite(h0.grad).all()


@pytest.mark.parametrize("op, activation", [("scan", "g"), ("gru", "g"), ("gru", "identity"), ("lstm", "g"), ("lstm", "identity")])
def test_gradcheck(op, activation):
    B, T, H = 2, 6, 3
    xs = [torch.randn(B, T, H, dtype=torch.float64, requires_grad=True) for _ in range(N_INPUTS[op])]
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    mask = make_mask(B, T) if op != "scan" else None

    def fn(*inputs):
        *seq, h = inputs
        if op == "scan":
            seq[0] = torch.sigmoid(seq[0])
        return run(op, seq, h, mask, activation)

    assert torch.autograd.gradcheck(fn, (*xs, h0))


# ----------------------------------------------------------------------------- packed ops


def packed(op, *args, **kwargs):
    return (F.min_gru_packed if op == "gru" else F.min_lstm_packed)(*args, **kwargs)


def check_packed(op, B, T, H, h0_kind=None, masked=False, activation="g", dtype=torch.float32, pre=None,
                 rtol=1e-4, atol=1e-5, loss="weighted"):  # fmt: skip
    """The packed op (pre-activations side by side in one tensor) against the float64 reference:
    values, d(pre) and dh0."""
    n = N_INPUTS[op]
    if pre is None:
        pre = torch.randn(B, T, n * H, dtype=torch.float64).to(dtype).requires_grad_()
    h0 = make_h0(h0_kind, B, H, dtype)
    mask = make_mask(B, T) if masked else None
    leaves = [pre] + ([h0] if h0 is not None else [])
    out = packed(op, pre, h0, mask, activation=activation, backend="cpu")
    assert out.dtype == pre.dtype and out.shape == (B, T, H)
    ref = reference(op, list(pre.chunk(n, dim=-1)), h0, mask, activation)
    torch.testing.assert_close(out.double(), ref, rtol=rtol, atol=atol)
    w = torch.randn(B, T, H, dtype=torch.float64)
    if loss == "sum":  # grad_h arrives expanded (stride 0)
        grads = torch.autograd.grad(out.sum(), leaves)
        ref_grads = torch.autograd.grad(ref.sum(), leaves)
    else:
        grads = torch.autograd.grad((out * w.to(out.dtype)).sum(), leaves)
        ref_grads = torch.autograd.grad((ref * w).sum(), leaves)
    for g, r in zip(grads, ref_grads):
        assert g.dtype == dtype and g.shape == r.shape and torch.isfinite(g).all()
        torch.testing.assert_close(g.double(), r.double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("op", ["gru", "lstm"])
@pytest.mark.parametrize("activation", ["g", "identity"])
@pytest.mark.parametrize("h0_kind", [None, "neg"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("B, T, H", [(3, 37, 5), (1, 1, 1), (2, 1, 7), (1, 300, 100)])
def test_packed_matches_reference(op, activation, h0_kind, masked, B, T, H):
    # (1, 300, 100): B = 1 splits H into several lanes per row; T = 1 and H = 1 edge cases.
    check_packed(op, B, T, H, h0_kind, masked, activation)


@pytest.mark.parametrize("op", ["gru", "lstm"])
def test_packed_float64_exact_and_sum_loss(op):
    check_packed(op, 2, 50, 4, "pos", masked=True, dtype=torch.float64, rtol=1e-11, atol=1e-12)
    check_packed(op, 2, 50, 6, "neg", loss="sum")


@pytest.mark.parametrize("op", ["gru", "lstm"])
def test_packed_strided_and_offset_inputs(op):
    n, B, T, H = N_INPUTS[op], 3, 20, 6
    # A column slice of a wider tensor: storage offset and B/T strides of the wider one, read in place.
    wide = torch.randn(B, T, n * H + 5, requires_grad=True)
    check_packed(op, B, T, H, "neg", masked=True, pre=wide[..., 2 : 2 + n * H])
    # Last-dim stride != 1 (a transpose): copied first.
    tr = torch.randn(B, n * H, T, requires_grad=True)
    check_packed(op, B, T, H, None, pre=tr.transpose(1, 2))


@pytest.mark.parametrize("op", ["gru", "lstm"])
def test_packed_equals_unpacked(op):
    # Same kernels, so the same numbers: d(pre) written in place equals cat(d(gate), d(cand), ...).
    n, B, T, H = N_INPUTS[op], 4, 33, 9
    pre = torch.randn(B, T, n * H, requires_grad=True)
    h0 = torch.randn(B, H, requires_grad=True)
    mask = make_mask(B, T)
    w = torch.randn(B, T, H)
    out_p = packed(op, pre, h0, mask, backend="cpu")
    gp = torch.autograd.grad((out_p * w).sum(), [pre, h0])
    out_u = run(op, pre.chunk(n, dim=-1), h0, mask, "g")
    gu = torch.autograd.grad((out_u * w).sum(), [pre, h0])
    torch.testing.assert_close(out_p, out_u, rtol=0, atol=0)
    for a, b in zip(gp, gu):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("op", ["gru", "lstm"])
def test_packed_half_precision(op, dtype):
    check_packed(op, 2, 40, 8, "neg", masked=True, dtype=dtype, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("op", ["gru", "lstm"])
def test_packed_gradcheck(op):
    B, T, H = 2, 6, 3
    pre = torch.randn(B, T, N_INPUTS[op] * H, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    mask = make_mask(B, T)
    assert torch.autograd.gradcheck(lambda p, h: packed(op, p, h, mask, backend="cpu"), (pre, h0))


@pytest.mark.parametrize("op", ["gru", "lstm"])
def test_packed_other_backends_split(op):
    # Backends without a packed kernel run the unpacked op on the chunks: same result.
    n = N_INPUTS[op]
    pre = torch.randn(2, 7, n * 4)
    h0 = torch.randn(2, 4)
    ref = run(op, pre.chunk(n, dim=-1), h0, None, "g", backend="torch")
    torch.testing.assert_close(packed(op, pre, h0, backend="torch"), ref)
    torch.testing.assert_close(packed(op, pre, h0), ref, rtol=1e-5, atol=1e-6)


def test_packed_bad_width_is_a_value_error():
    with pytest.raises(ValueError, match="multiple of 3"):
        F.min_lstm_packed(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match=r"h0 has shape \(3, 4\), expected \(B, H\) = \(2, 4\)"):
        F.min_gru_packed(torch.randn(2, 3, 8), torch.randn(3, 4))


# ----------------------------------------------------------------------------- plumbing


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_follow_torch(monkeypatch, threads):
    # The lanes are split into torch.get_num_threads() ranges, the calling thread runs the first.
    calls = []
    launch = scan_cpu._launch

    def spy(kernel, args, B, T, H):
        calls.append(threading.get_ident())
        return launch(kernel, args, B, T, H)

    submitted = []
    real_pool = scan_cpu._thread_pool

    def pool(workers):
        submitted.append(workers)
        return real_pool(workers)

    F.min_gru(torch.randn(1, 1, 1), torch.randn(1, 1, 1), backend="cpu")  # kernels loaded (and probed) first
    monkeypatch.setattr(scan_cpu, "_launch", spy)
    monkeypatch.setattr(scan_cpu, "_thread_pool", pool)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        x = torch.randn(8, 64, 64)  # above _PARALLEL_MIN
        out = F.min_gru(x, x, backend="cpu")
    finally:
        torch.set_num_threads(before)
    assert calls == [threading.get_ident()]
    assert submitted == ([threads - 1] if threads > 1 else [])
    torch.testing.assert_close(out.double(), reference("gru", [x, x]), rtol=1e-5, atol=1e-6)


_CONCURRENT_CHILD = r"""
import copy, threading, torch
from minrnn import MinGRU, MinLSTM
torch.set_num_threads(2)
torch.manual_seed(0)
lengths = torch.tensor([96, 50, 1, 96, 7, 96, 80, 3])
models = {cls.__name__: cls(16, 32, num_layers=2, batch_first=True) for cls in (MinGRU, MinLSTM)}
x0 = torch.randn(8, 96, 16)
results, errors = {}, []

def work(rnn, key):
    try:
        x = x0.clone().requires_grad_()
        for _ in range(15):
            rnn.zero_grad(set_to_none=True)
            x.grad = None
            out, _ = rnn(x, lengths=lengths)
            out.square().sum().backward()
        results[key] = (out.detach(), x.grad.clone(), [p.grad.clone() for p in rnn.parameters()])
    except BaseException as e:
        errors.append(repr(e))

# Built here: torch's random generator is shared by all threads.
jobs = [(copy.deepcopy(m), f"{name}{k}") for k in range(2) for name, m in models.items()]
threads = [threading.Thread(target=work, args=job) for job in jobs]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
for name, m in models.items():
    work(m, name)  # alone
    for k in range(2):
        a, b = results[f"{name}{k}"], results[name]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), name
        assert all(torch.equal(p, q) for p, q in zip(a[2], b[2])), name
print("ok")
"""


def test_concurrent_threads_do_not_abort():
    # Two (here four) Python threads running the kernels at once: numba's workqueue layer aborted the
    # whole process. In a subprocess, so that an abort fails this test instead of killing pytest.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", _CONCURRENT_CHILD], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout[-2000:] + out.stderr[-2000:]


_NUMBA_CONFIG_CHILD = r"""
import numba, torch
from numba.np.ufunc import parallel
layer = numba.config.THREADING_LAYER
import minrnn
from minrnn import MinGRU, functional as F
assert F.get_backend(torch.zeros(1, 1, 1)).name == "cpu"
rnn = MinGRU(8, 16, batch_first=True)
def run():
    rnn(torch.randn(4, 300, 8))[0].sum().backward()
torch.set_num_threads(2)
run()
assert numba.config.THREADING_LAYER == layer, numba.config.THREADING_LAYER
assert parallel._is_initialized is False, "minrnn started numba's threading layer"
# numba.get_num_threads() starts the layer itself, so it is only read now.
assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
numba.set_num_threads(1)
torch.set_num_threads(2)
run()
assert numba.get_num_threads() == 1
print("ok")
"""


def test_minrnn_leaves_numba_configuration_alone():
    # minrnn neither picks numba's threading layer nor sets its thread count: the user's own numba
    # code keeps the configuration it had (a process-wide switch made it abort, issue 13).
    pytest.importorskip("numba")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", _NUMBA_CONFIG_CHILD], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout[-2000:] + out.stderr[-2000:]


def test_fallback_warns_once_without_numba(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` fail
    monkeypatch.delitem(sys.modules, "minrnn.ops.scan_cpu")
    monkeypatch.delattr(sys.modules["minrnn.ops"], "scan_cpu")
    monkeypatch.delitem(F._kernel_modules, "scan_cpu", raising=False)  # forget the earlier probe
    gate, cand = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out1 = F.min_gru(gate, cand)
        out2 = F.min_gru(gate, cand)
    assert [w.category for w in caught] == [RuntimeWarning]
    assert F.get_backend(gate).name == "torch"
    torch.testing.assert_close(out1, F.min_gru(gate, cand, backend="torch"))
    torch.testing.assert_close(out2, out1)


def test_custom_ops_pass_opcheck():
    # torch's own consistency checks of the registered fake kernels and autograd formulas.
    gate, cand = (torch.randn(2, 5, 3, requires_grad=True) for _ in range(2))
    h0 = torch.randn(2, 3, requires_grad=True)
    mask = make_mask(2, 5)
    torch.library.opcheck(scan_cpu._min_gru_op, (gate, cand, h0, mask, "g"))
    torch.library.opcheck(scan_cpu._min_lstm_op, (gate, cand, cand.detach(), None, mask, "identity"))
    torch.library.opcheck(scan_cpu.linear_scan_cpu, (torch.rand(2, 5, 3), cand, h0))
    pre2, pre3 = torch.randn(2, 5, 6, requires_grad=True), torch.randn(2, 5, 9, requires_grad=True)
    torch.library.opcheck(scan_cpu._min_gru_packed_op, (pre2, h0, mask, "g"))
    torch.library.opcheck(scan_cpu._min_lstm_packed_op, (pre3, None, None, "identity"))


@pytest.mark.slow  # about 20-70 s of compilation on a busy 2-core machine
@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_torch_compile_forward_backward(cls):
    torch._dynamo.reset()
    layer = cls(8, 16, num_layers=2, batch_first=True)
    x = torch.randn(3, 20, 8)
    compiled = torch.compile(layer, fullgraph=True)  # fullgraph: the custom ops trace without breaks
    out, h_n = compiled(x)
    h_n = h_n[0] if cls is MinLSTM else h_n  # MinLSTM returns nn.LSTM's (h_n, c_n)
    (out.sum() + h_n.sum()).backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    ref_out, ref_h = layer(x)
    ref_h = ref_h[0] if cls is MinLSTM else ref_h
    (ref_out.sum() + ref_h.sum()).backward()
    torch.testing.assert_close(out, ref_out)
    for g, p in zip(grads, layer.parameters()):
        torch.testing.assert_close(g, p.grad)


@pytest.mark.slow
@pytest.mark.parametrize("op", ["scan", "gru", "lstm"])
def test_float32_error_at_65536_steps(op):
    # The sequential float32 recurrence contracts (|a| < 1): its error does not grow with T.
    B, T, H = 2, 65536, 4
    with torch.no_grad():
        _, xs = make_inputs(op, B, T, H)
        h0 = make_h0("neg", B, H)
        out = run(op, xs, h0, None, "g").double()
        ref = reference(op, xs, h0, None, "g")
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    assert rel <= 1e-5, rel


_ASM_PROBE = r"""
import platform, re, torch
from minrnn.ops import scan_cpu as K
pre = torch.randn(2, 3, 3 * 64, requires_grad=True)
f, i, c = pre.chunk(3, -1)
K.min_gru_cpu(f, c).sum().backward()
K.min_lstm_cpu(f, i, c).sum().backward()
for name in ("_min_gru_fwd", "_min_gru_bwd", "_min_lstm_fwd", "_min_lstm_bwd"):
    asm = next(a for sig, a in getattr(K, name).inspect_asm().items() if "float32" in str(sig))
    packed = len(re.findall(r"vdivps\s+[^\n]*%[xyz]mm", asm)) if platform.machine() == "x86_64" else -1
    print(name, "division by zero" in asm, packed)
"""


@pytest.mark.slow  # compiles every kernel in a fresh numba cache (cached code cannot be inspected)
def test_kernels_have_no_zero_division_check_and_vectorize(tmp_path):
    # numba's default error model puts a ZeroDivisionError branch on every division, which kept
    # every kernel loop scalar (benchmarks/NOTES-cpu.md, "Issue 13's kernels"); on x86-64 the
    # loops' divisions must then be packed vdivps.
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _ASM_PROBE], capture_output=True, text=True, check=True, env=env)
    for line in out.stdout.strip().splitlines():
        name, has_check, packed = line.split()
        assert has_check == "False", f"{name} checks for division by zero"
        assert int(packed) != 0, f"{name} has no packed division: its loop did not vectorize"
