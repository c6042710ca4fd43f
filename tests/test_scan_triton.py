"""The Triton kernels (minrnn.ops.scan_triton) against the float64 sequential reference.

On a machine with a GPU they run on CUDA; otherwise on CPU tensors under TRITON_INTERPRET=1,
which must be set before triton is imported (triton decides at @triton.jit time whether a kernel
is interpreted). The interpreter runs `tl.associative_scan` element by element in Python, so the
tests use small shapes, mostly with 16 x 16 tiles, which also put several chunks and several
channel blocks in every test.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from minrnn import MinGRU
from minrnn import functional as F
from minrnn.ops.reference import sequential_scan
from tests.helpers import reference

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")
HAS_TRITON = importlib.util.find_spec("triton") is not None
requires_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
DEVICE = "cuda" if ON_GPU else "cpu"


@pytest.fixture
def st_default():
    """The kernel module with its default tiles."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    from minrnn.ops import scan_triton

    if not ON_GPU and not scan_triton._interpreting():
        pytest.skip("triton was imported before TRITON_INTERPRET=1 was set; run this file alone")
    return scan_triton


@pytest.fixture
def st(st_default, monkeypatch):
    """The kernel module with 16 x 16 tiles: small shapes then span several chunks and channel blocks."""
    monkeypatch.setitem(st_default.CONFIG, "block_t", 16)
    monkeypatch.setitem(st_default.CONFIG, "block_h", 16)
    return st_default


# ----------------------------------------------------------------------------- helpers

N_INPUTS = {"scan": 2, "gru": 2, "lstm": 3}


def make_inputs(cell: str, B: int, T: int, H: int, scale: float = 2.0):
    """Fresh float64 pre-activations on DEVICE (a in (0, 1) for the plain linear scan)."""
    xs = [scale * torch.randn(B, T, H, dtype=torch.float64, device=DEVICE) for _ in range(N_INPUTS[cell])]
    if cell == "scan":
        xs[0] = torch.rand(B, T, H, dtype=torch.float64, device=DEVICE)
    return xs


def run_triton(st, cell: str, xs, h0, mask, activation: str):
    if cell == "scan":
        return st.linear_scan(*xs, h0)
    if cell == "gru":
        return st.min_gru(*xs, h0, mask, activation=activation)
    return st.min_lstm(*xs, h0, mask, activation=activation)


def check_against_reference(st, cell, B, T, H, *, h0=False, mask=False, activation="g", dtype=torch.float32,
                            tol=None, scale=2.0):
    """Values and the gradients of every input and h0, for one random upstream gradient."""
    xs64 = make_inputs(cell, B, T, H, scale)
    h064 = -3 * torch.rand(B, H, dtype=torch.float64, device=DEVICE) if h0 else None  # negative h0
    m = torch.rand(B, T, device=DEVICE) > 0.3 if mask else None
    leaves = [x.to(dtype).requires_grad_() for x in xs64 + ([h064] if h0 else [])]
    # The reference runs on the same (rounded) inputs in float64, so that only the kernel's error counts.
    leaves_ref = [x.detach().double().requires_grad_() for x in leaves]
    n = N_INPUTS[cell]

    out = run_triton(st, cell, leaves[:n], leaves[n] if h0 else None, m, activation)
    ref = reference(cell, leaves_ref[:n], leaves_ref[n] if h0 else None, m, activation)
    assert out.dtype == dtype and out.shape == (B, T, H)
    rtol, atol = tol or (1e-5, 1e-5)
    torch.testing.assert_close(out.double(), ref, rtol=rtol, atol=atol)

    grad = torch.randn_like(ref)
    grads = torch.autograd.grad(out, leaves, grad.to(dtype))
    grads_ref = torch.autograd.grad(ref, leaves_ref, grad)
    for g, g_ref, leaf in zip(grads, grads_ref, leaves):
        assert g.dtype == leaf.dtype and g.shape == leaf.shape
        torch.testing.assert_close(g.double(), g_ref, rtol=rtol, atol=2 * atol)
    return out, ref


# ----------------------------------------------------------------------------- values and gradients


@requires_triton
@pytest.mark.parametrize("h0, mask", [(False, False), (True, True)])
@pytest.mark.parametrize("cell, activation", [("gru", "g"), ("gru", "identity"), ("lstm", "g"), ("lstm", "identity")])
def test_cells_match_reference(st, cell, activation, h0, mask):
    # T = 37: three chunks of 16, the last partial; H = 19: two channel blocks, the last partial.
    check_against_reference(st, cell, 2, 37, 19, h0=h0, mask=mask, activation=activation)


@requires_triton
@pytest.mark.parametrize("h0", [False, True])
def test_linear_scan_matches_reference(st, h0):
    check_against_reference(st, "scan", 2, 37, 19, h0=h0)


@requires_triton
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_default_tiles(st_default, cell):
    # The launch configuration the library uses: T = 75 is three chunks of 32, H = 40 two blocks.
    check_against_reference(st_default, cell, 2, 75, 40, h0=True, mask=True)


@requires_triton
@pytest.mark.parametrize("T", [1, 16, 100])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_sequence_lengths(st, cell, T):
    # T = 1, T exactly one chunk, T = 100: seven chunks with a partial last one.
    check_against_reference(st, cell, 1, T, 5, h0=True, mask=T > 1)


@requires_triton
@pytest.mark.parametrize("B, H", [(0, 3), (2, 0)])
def test_empty_batch_or_channels(st, B, H):
    gate = torch.randn(B, 4, H, device=DEVICE, requires_grad=True)
    cand = torch.randn(B, 4, H, device=DEVICE, requires_grad=True)
    h0 = torch.randn(B, H, device=DEVICE, requires_grad=True)
    out = st.min_gru(gate, cand, h0)
    assert out.shape == (B, 4, H)
    out.sum().backward()
    assert gate.grad.shape == gate.shape and h0.grad.shape == h0.shape


@requires_triton
def test_fully_masked_rows_keep_h0(st):
    B, T, H = 2, 20, 3
    gate, cand = make_inputs("gru", B, T, H)
    h0 = -torch.rand(B, H, dtype=torch.float64, device=DEVICE)
    mask = torch.zeros(B, T, dtype=torch.bool, device=DEVICE)
    mask[1, 5] = True
    out = st.min_gru(gate.float(), cand.float(), h0.float(), mask)
    torch.testing.assert_close(out[0].double(), h0[0].expand(T, H), rtol=0, atol=1e-7)
    torch.testing.assert_close(out[1, :5].double(), h0[1].expand(5, H), rtol=0, atol=1e-7)


@requires_triton
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_saturated_gates(st, cell):
    # Pre-activations around +-30: coefficients near 0 and 1 and down to 1e-13, no NaN/inf.
    out, _ = check_against_reference(st, cell, 1, 40, 6, h0=True, mask=True, scale=30.0, tol=(1e-5, 1e-5))
    assert torch.isfinite(out).all()


@requires_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_half_precision_inputs(st, cell, dtype):
    # Inputs and outputs in 16 bits, state in float32: the error is the output rounding (2**-8
    # relative for bf16), not a growing one. Gradients go through the rounded output h_{t-1}.
    tol = (2e-2, 2e-2) if dtype == torch.bfloat16 else (4e-3, 4e-3)
    check_against_reference(st, cell, 2, 37, 19, h0=True, mask=True, dtype=dtype, tol=tol)


@requires_triton
def test_strided_views(st):
    # The layers pass gate, cand = proj(x).chunk(2, -1): views with stride 2H along T.
    B, T, H = 2, 23, 7
    pre = torch.randn(B, T, 2 * H, device=DEVICE, requires_grad=True)
    gate, cand = pre.chunk(2, dim=-1)
    out = st.min_gru(gate, cand)
    ref = reference("gru", [gate.double(), cand.double()], None, None, "g")
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    (out * torch.arange(T, device=DEVICE).view(1, T, 1)).sum().backward()
    pre64 = pre.detach().double().requires_grad_()
    g64, c64 = pre64.chunk(2, dim=-1)
    (reference("gru", [g64, c64], None, None, "g") * torch.arange(T, device=DEVICE).view(1, T, 1)).sum().backward()
    torch.testing.assert_close(pre.grad.double(), pre64.grad, rtol=1e-5, atol=1e-5)


@requires_triton
def test_loop_kernel_matches_reference(st):
    a, b = make_inputs("scan", 2, 29, 19)
    out = st.linear_scan_loop_forward(a.float(), b.float(), block_h=16)
    torch.testing.assert_close(out.double(), sequential_scan(a, b), rtol=1e-5, atol=1e-5)


@requires_triton
@pytest.mark.slow
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_long_sequence(st, cell):
    # T >= 4096 (256 chunks of 16 when interpreted): the float32 error must not grow with T.
    check_against_reference(st, cell, 1, 4096 + 7, 3, h0=True, mask=True)


@requires_triton
@pytest.mark.slow
def test_kernels_compile_for_h100():
    # The interpreter accepts code that the GPU compiler may reject: compile ahead of time for sm_90
    # (ptxas ships with triton; no GPU needed) with the default tiles, in a process not interpreting.
    from minrnn.ops.scan_triton import CONFIG

    config = f"{CONFIG['block_t']}x{CONFIG['block_h']}x{CONFIG['num_warps']}"
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "triton_resources.py")
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, script, "--arch", "90", "--configs", config], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert "no configuration spills registers" in out, out


# ----------------------------------------------------------------------------- torch integration


@requires_triton
def test_custom_op_registrations(st):
    # Schema, fake (meta) function, autograd registration and AOT dispatch, checked by torch.
    gate = torch.randn(1, 5, 3, device=DEVICE, requires_grad=True)
    cand = torch.randn(1, 5, 3, device=DEVICE, requires_grad=True)
    h0 = torch.randn(1, 3, device=DEVICE, requires_grad=True)
    mask = torch.tensor([[True, False, True, True, False]], device=DEVICE)
    torch.library.opcheck(st._scan_fwd, (gate, cand, None, h0, mask, "gru", "g"))


@requires_triton
def test_torch_compile(st):
    # aot_eager traces through the fake and autograd registrations without needing a C++ compiler.
    forget, inp, cand = (torch.randn(2, 9, 5, device=DEVICE, requires_grad=True) for _ in range(3))

    def f(forget, inp, cand):
        return (st.min_lstm(forget, inp, cand).sin() * 2).sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    grads = torch.autograd.grad(compiled(forget, inp, cand), (forget, inp, cand))
    grads_eager = torch.autograd.grad(f(forget, inp, cand), (forget, inp, cand))
    for g, g_eager in zip(grads, grads_eager):
        torch.testing.assert_close(g, g_eager)


@requires_triton
def test_compiled_layer_uses_kernels(st, monkeypatch):
    # A MinGRU layer on the triton backend under torch.compile(fullgraph=True): no graph break from
    # the backend lookup or the lazy import. On CPU the backend is made to accept interpreted tensors.
    if not ON_GPU:
        triton_backend = dataclasses.replace(F._BACKENDS["triton"], supports=lambda x: True, available=lambda: True)
        monkeypatch.setattr(F, "_BACKENDS", {**F._BACKENDS, "triton": triton_backend})
    layer = MinGRU(6, 5, batch_first=True, backend="triton").to(DEVICE)
    x = torch.randn(2, 7, 6, device=DEVICE, requires_grad=True)
    h0 = -torch.rand(1, 2, 5, device=DEVICE)

    def loss_fn(x):
        out, h_n = layer(x, h0)
        return out.square().mean() + h_n.sum()

    loss = torch.compile(loss_fn, backend="aot_eager", fullgraph=True)(x)
    (grad,) = torch.autograd.grad(loss, x)
    ref_layer = MinGRU(6, 5, batch_first=True, backend="sequential").to(DEVICE)
    ref_layer.load_state_dict(layer.state_dict())
    out, h_n = ref_layer(x, h0)
    ref_loss = out.square().mean() + h_n.sum()
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(grad, torch.autograd.grad(ref_loss, x)[0])


@requires_triton
def test_backend_selection(st):
    assert "triton" in F.available_backends()
    x = torch.randn(2, 8, 4, device=DEVICE)
    if ON_GPU:
        assert F.get_backend(x).name == "triton"
        assert F.get_backend(x.double()).name != "triton"  # float64 stays on the exact torch path
        out = F.min_gru(x, x.flip(1), activation="identity")
        torch.testing.assert_close(out, F.min_gru(x, x.flip(1), activation="identity", backend="torch"))
    else:
        assert F.get_backend(x).name != "triton"
        with pytest.raises(ValueError, match="triton"):
            F.min_gru(x, x, backend="triton")


@requires_triton
def test_cpu_tensor_without_interpreter_is_refused(st, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = torch.randn(1, 4, 2)
    with pytest.raises(ValueError, match="CUDA"):
        st.min_gru(x, x)


def test_minrnn_imports_and_runs_without_triton():
    # A machine without triton: minrnn imports, the CPU path runs, "triton" is never selected.
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, minrnn\n"
        "from minrnn import functional as F\n"
        "x = torch.randn(2, 5, 3)\n"
        "assert F.get_backend(x).name != 'triton'\n"
        "assert F.min_gru(x, x).shape == (2, 5, 3)\n"
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    assert not F._triton_kernels_available() and not F._triton_kernels_available()\n"
        "assert len(w) == 1 and 'scan_triton unavailable' in str(w[0].message), w\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
