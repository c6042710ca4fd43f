"""Functional minGRU / minLSTM / linear scan on (B, T, H) tensors.

These are the exact recurrences of "Were RNNs All We Needed?" (Feng et al., 2024):

    min_gru:     h_t = (1 - z_t) * h_{t-1} + z_t * act(cand_t),       z_t = sigmoid(gate_t)
    min_lstm:    h_t = f'_t * h_{t-1} + i'_t * act(cand_t),           f', i' normalized gates
    linear_scan: h_t = a_t * h_{t-1} + b_t

``act`` is the paper's g (x + 0.5 for x >= 0, sigmoid(x) otherwise) by default, or the identity
(the paper's vanilla form) with ``activation="identity"``. A False in ``mask`` (B, T) marks a
padded step: it leaves the state unchanged, so the output there repeats the previous state.
`min_gru_packed` / `min_lstm_packed` take the pre-activations side by side in one (B, T, n * H)
tensor, as the layers' Linear produces them (on the "cpu" backend without a split or a gradient
concatenation).

Each op runs on a *backend*: ``"cpu"`` (fused numba kernels, picked first for CPU tensors; see
`minrnn.ops.scan_cpu`), ``"triton"`` (fused Triton kernels, picked first for CUDA tensors in
float32/bf16/fp16; see `minrnn.ops.scan_triton`), ``"torch"`` (chunked scan in plain PyTorch, any
device), ``"sequential"`` (step-by-step autograd reference) or ``"log"`` (the paper's log-space
Heinsen scan, kept as a baseline). ``backend=None`` uses the default: the one set with
`use_backend` (a context manager) or `set_backend`, else the first eligible backend for the input.
That default is context-local (`contextvars`): setting it in one thread or asyncio task does not
change another's; a new thread starts with automatic selection. Inside torch.compile'd code the
default is read per thread (not per asyncio task) and a change recompiles.

While `torch.export` or `torch.onnx.export(..., dynamo=True)` traces a model, every op uses a scan
that exports with a dynamic sequence length (`minrnn.ops.scan_export`), whatever backend was set;
nothing is switched outside that trace.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import threading
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Iterator

import torch
from torch import Tensor

from minrnn.ops import reference
from minrnn.ops.activations import ACTIVATIONS, min_gru_coeffs, min_lstm_coeffs
from minrnn.ops.scan_torch import linear_scan_torch

__all__ = [
    "min_gru",
    "min_lstm",
    "min_gru_packed",
    "min_lstm_packed",
    "linear_scan",
    "min_gru_step",
    "min_lstm_step",
    "step_kernels",
    "Backend",
    "register_backend",
    "set_backend",
    "use_backend",
    "check_backend",
    "get_backend",
    "available_backends",
]

ScanFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


@dataclass(frozen=True)
class Backend:
    """One implementation of the ops.

    ``scan`` alone suffices: the cells are then computed as elementwise coefficients + scan.
    A fused backend also gives ``min_gru`` / ``min_lstm`` taking the pre-activations directly
    (same arguments as the public ops, inputs already checked), and may give ``min_gru_packed`` /
    ``min_lstm_packed`` taking them as one (B, T, n * H) tensor (`min_gru_packed`); without
    those, the packed ops split the tensor and call ``min_gru`` / ``min_lstm``. ``supports(x)`` says whether it
    can run on tensor x (device, dtype); automatic selection takes the first registered backend
    that supports the input.
    """

    name: str
    scan: ScanFn
    min_gru: Callable[..., Tensor] | None = None
    min_lstm: Callable[..., Tensor] | None = None
    min_gru_packed: Callable[..., Tensor] | None = None
    min_lstm_packed: Callable[..., Tensor] | None = None
    supports: Callable[[Tensor], bool] = lambda x: True
    auto: bool = True  # eligible for automatic selection
    available: Callable[[], bool] = lambda: True  # can run on some device of this machine


def _log_scan(a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
    return reference.heinsen_scan(torch.log(a), b, h0)


# Order matters: automatic selection takes the first eligible backend; "torch" runs anywhere.
_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend, first: bool = False) -> None:
    """Add a backend; ``first=True`` puts it ahead of the others for automatic selection."""
    global _BACKENDS
    others = {k: v for k, v in _BACKENDS.items() if k != backend.name}
    _BACKENDS = {backend.name: backend, **others} if first else {**others, backend.name: backend}


# ----------------------------------------------------------------------------- fused kernels
# The kernel modules import numba / triton, which minrnn itself does not need: they are imported
# on first use, and a machine where that fails gets one warning and the "torch" backend.

_kernel_modules: dict[str, ModuleType | None] = {}


def _load_kernels(name: str) -> ModuleType | None:
    """Import ``minrnn.ops.<name>`` and run its ``probe()`` if it has one, once; None on failure."""
    if name not in _kernel_modules:
        try:
            module = importlib.import_module(f"minrnn.ops.{name}")
            if hasattr(module, "probe"):
                module.probe()
            _kernel_modules[name] = module
        except Exception as e:  # no numba / triton, or no compiler support: use the fallback
            warnings.warn(
                f"minrnn: fused kernels minrnn.ops.{name} unavailable ({type(e).__name__}: {e}); using the 'torch' backend",
                RuntimeWarning,
                stacklevel=5,
            )
            _kernel_modules[name] = None
    return _kernel_modules[name]


def _assume_constant_result(fn: Callable) -> Callable:
    """`torch.compiler.assume_constant_result` without importing torch._dynamo (and triton with it),
    which would cost ``import minrnn`` seconds: that decorator only sets this attribute, which
    dynamo reads when it traces a call (tests/test_import.py checks that it still does)."""
    fn._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return fn


@_assume_constant_result  # torch.compile calls it eagerly instead of tracing the import
def _cpu_kernels_available() -> bool:
    return _load_kernels("scan_cpu") is not None


@_assume_constant_result
def _triton_kernels_available() -> bool:
    return _load_kernels("scan_triton") is not None


def _cpu_scan(a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
    from minrnn.ops.scan_cpu import linear_scan_cpu

    return linear_scan_cpu(a, b, h0)


def _cpu_min_gru(*args, **kwargs) -> Tensor:
    from minrnn.ops.scan_cpu import min_gru_cpu

    return min_gru_cpu(*args, **kwargs)


def _cpu_min_lstm(*args, **kwargs) -> Tensor:
    from minrnn.ops.scan_cpu import min_lstm_cpu

    return min_lstm_cpu(*args, **kwargs)


def _cpu_min_gru_packed(*args, **kwargs) -> Tensor:
    from minrnn.ops.scan_cpu import min_gru_packed_cpu

    return min_gru_packed_cpu(*args, **kwargs)


def _cpu_min_lstm_packed(*args, **kwargs) -> Tensor:
    from minrnn.ops.scan_cpu import min_lstm_packed_cpu

    return min_lstm_packed_cpu(*args, **kwargs)


def _triton_scan(a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
    from minrnn.ops.scan_triton import linear_scan

    return linear_scan(a, b, h0)


def _triton_min_gru(*args, **kwargs) -> Tensor:
    from minrnn.ops.scan_triton import min_gru

    return min_gru(*args, **kwargs)


def _triton_min_lstm(*args, **kwargs) -> Tensor:
    from minrnn.ops.scan_triton import min_lstm

    return min_lstm(*args, **kwargs)


register_backend(Backend("torch", linear_scan_torch))
register_backend(Backend("sequential", reference.sequential_scan, auto=False))
register_backend(Backend("log", _log_scan, auto=False))
register_backend(
    Backend(
        "cpu",
        scan=_cpu_scan,
        min_gru=_cpu_min_gru,
        min_lstm=_cpu_min_lstm,
        min_gru_packed=_cpu_min_gru_packed,
        min_lstm_packed=_cpu_min_lstm_packed,
        # device first: a CUDA-only machine never imports numba
        supports=lambda x: x.device.type == "cpu" and _cpu_kernels_available(),
        available=lambda: _cpu_kernels_available(),
    ),
    first=True,
)
register_backend(
    Backend(
        "triton",
        scan=_triton_scan,
        min_gru=_triton_min_gru,
        min_lstm=_triton_min_lstm,
        # is_cuda first: on a CPU tensor triton is never imported
        supports=lambda x: x.is_cuda
        and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
        and _triton_kernels_available(),
        available=lambda: torch.cuda.is_available() and _triton_kernels_available(),
    ),
    first=True,
)
_default_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar("minrnn_backend", default=None)
# The same setting per thread, read by code that torch.compile traces: dynamo cannot trace
# ContextVar.get (a graph break, fatal under fullgraph=True), but it reads a threading.local's
# attributes and guards on their values, so a compiled model still follows `use_backend`.
_thread_default = threading.local()


def _set_default(name: str | None) -> None:
    _default_backend.set(name)
    _thread_default.name = name


def _current_default() -> str | None:
    if torch.compiler.is_compiling():
        return getattr(_thread_default, "name", None)
    return _default_backend.get()


def available_backends(x: Tensor | None = None) -> list[str]:
    """Names accepted by ``backend=`` and `set_backend`; with ``x``, only those that can run on it."""
    return [name for name, b in _BACKENDS.items() if x is None or b.supports(x)]


def check_backend(name: str | None) -> None:
    """Raise a ValueError unless ``name`` is None (automatic) or a backend that can run here."""
    if name is None:
        return
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {available_backends()}")
    if not _BACKENDS[name].available():
        why = "it needs a CUDA GPU and triton" if name == "triton" else "its kernels could not be loaded"
        raise ValueError(f"backend {name!r} cannot run on this machine ({why})")


def set_backend(name: str | None) -> None:
    """Set the backend used when an op is called with ``backend=None``, in the current thread or
    context (None: pick automatically). Prefer `use_backend`, which restores the previous one."""
    check_backend(name)
    _set_default(name)


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Run the block with ``name`` as the default backend of this thread or context::

        with functional.use_backend("torch"):
            out, h = rnn(x)
    """
    check_backend(name)
    token, previous = _default_backend.set(name), getattr(_thread_default, "name", None)
    _thread_default.name = name
    try:
        yield
    finally:
        _default_backend.reset(token)
        _thread_default.name = previous


def _export_scan(a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
    from minrnn.ops.scan_export import linear_scan_export

    return linear_scan_export(a, b, h0)


# Used only while torch.export / torch.onnx.export(dynamo=True) traces a model: the one scan that
# exports with a dynamic T. Not registered, so it is never picked or listed outside an export.
_EXPORT_BACKEND = Backend("export", _export_scan, auto=False)


def _is_exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.5
    return is_exporting is not None and is_exporting()


def get_backend(x: Tensor, backend: str | None = None) -> Backend:
    """The backend an op on tensor ``x`` would use: ``backend``, else the default, else automatic.
    While a model is being exported, always the export scan (same maths), whatever was chosen: this
    decides per call, so exporting never changes the default backend of the process or of a layer."""
    if _is_exporting():
        return _EXPORT_BACKEND
    name = backend or _current_default()
    if name is None:
        return next(b for b in _BACKENDS.values() if b.auto and b.supports(x))
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {available_backends()}")
    chosen = _BACKENDS[name]
    if not chosen.supports(x):
        raise ValueError(f"backend {name!r} cannot run on {x.device} / {x.dtype}")
    return chosen


# ----------------------------------------------------------------------------- input checks


def _check_seq(name: str, x: Tensor, like: Tensor | None = None) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a Tensor of shape (B, T, H), got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of shape (B, T, H), got dtype {x.dtype}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (B, T, H) (3 dims), got {x.dim()} dims: {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has T = 0 time steps; expected shape (B, T, H) with T >= 1")
    if like is not None:
        if x.shape != like.shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(like.shape)} (B, T, H) like the first input")
        if x.device != like.device:
            raise ValueError(f"{name} is on {x.device}, expected {like.device} like the first input")


def _check_h0(h0: Tensor | None, x: Tensor) -> None:
    if h0 is None:
        return
    B, _, H = x.shape
    if not isinstance(h0, Tensor) or not h0.is_floating_point():
        raise ValueError(f"h0 must be a floating-point tensor of shape (B, H) = ({B}, {H})")
    if tuple(h0.shape) != (B, H):
        raise ValueError(f"h0 has shape {tuple(h0.shape)}, expected (B, H) = ({B}, {H})")
    if h0.device != x.device:
        raise ValueError(f"h0 is on {h0.device}, expected {x.device} like the inputs")


def _check_mask(mask: Tensor | None, x: Tensor) -> None:
    if mask is None:
        return
    B, T, _ = x.shape
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a bool tensor of shape (B, T) = ({B}, {T}), got {got}")
    if tuple(mask.shape) != (B, T):
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected (B, T) = ({B}, {T})")
    if mask.device != x.device:
        raise ValueError(f"mask is on {mask.device}, expected {x.device} like the inputs")


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def _mask_inputs(mask: Tensor | None, *xs: Tensor) -> tuple[Tensor, ...]:
    """Pre-activations of padded steps become 0 (a where, not a product, so NaN/Inf there vanish):
    whatever they hold then reaches neither the coefficients nor any gradient."""
    if mask is None:
        return xs
    m = mask.unsqueeze(-1)
    return tuple(torch.where(m, x, x.new_zeros(())) for x in xs)


def _apply_mask(a: Tensor, b: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Padded steps become a = 1, b = 0: the state passes through unchanged."""
    if mask is None:
        return a, b
    m = mask.unsqueeze(-1)
    return torch.where(m, a, torch.ones_like(a)), torch.where(m, b, torch.zeros_like(b))


def _run_scan(impl: Backend, a: Tensor, b: Tensor, h0: Tensor | None, dtype: torch.dtype) -> Tensor:
    """``impl``'s scan computed in at least float32 (h0 cast to it too), returned in ``dtype``: the
    output dtype is the inputs', whatever h0's dtype and whichever backend runs."""
    compute = torch.promote_types(dtype, torch.float32)
    h = impl.scan(a.to(compute), b.to(compute), None if h0 is None else h0.to(compute))
    return h.to(dtype)


def _unfused_inputs(mask: Tensor | None, *xs: Tensor) -> tuple[torch.dtype, tuple[Tensor, ...]]:
    """(output dtype, pre-activations masked and in at least float32) for the coefficients + scan path."""
    dtype = xs[0].dtype
    for x in xs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    compute = torch.promote_types(dtype, torch.float32)
    return dtype, tuple(x.to(compute) for x in _mask_inputs(mask, *xs))


# ----------------------------------------------------------------------------- public ops


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, *, backend: str | None = None) -> Tensor:
    """h_t = a_t * h_{t-1} + b_t for all t.

    Args:
        a, b: (B, T, H) decay and input (any sign).
        h0: (B, H) initial state; None means zeros.
        backend: see module docstring.
    Returns:
        h: (B, T, H), dtype of b (whatever h0's dtype), accumulated in at least float32.
    """
    _check_seq("a", a)
    _check_seq("b", b, like=a)
    _check_h0(h0, b)
    return _run_scan(get_backend(b, backend), a, b, h0, b.dtype)


def min_gru(
    gate: Tensor,
    cand: Tensor,
    h0: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    activation: str = "g",
    backend: str | None = None,
) -> Tensor:
    """minGRU over a sequence: h_t = (1 - z_t) h_{t-1} + z_t act(cand_t), z_t = sigmoid(gate_t).

    Args:
        gate, cand: (B, T, H) pre-activations (outputs of the gate and candidate projections).
        h0: (B, H) initial state (any sign); None means zeros.
        mask: (B, T) bool, True = real step; a False step leaves the state unchanged.
        activation: ``"g"`` (default) or ``"identity"``.
    Returns:
        h: (B, T, H) in the inputs' dtype (whatever h0's dtype), computed in at least float32.
    """
    _check_seq("gate", gate)
    _check_seq("cand", cand, like=gate)
    _check_h0(h0, gate)
    _check_mask(mask, gate)
    _check_activation(activation)
    impl = get_backend(gate, backend)
    if impl.min_gru is not None:
        return impl.min_gru(gate, cand, h0, mask, activation=activation)
    dtype, (gate, cand) = _unfused_inputs(mask, gate, cand)
    a, b = _apply_mask(*min_gru_coeffs(gate, cand, activation), mask)
    return _run_scan(impl, a, b, h0, dtype)


def min_lstm(
    forget: Tensor,
    input: Tensor,
    cand: Tensor,
    h0: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    activation: str = "g",
    backend: str | None = None,
) -> Tensor:
    """minLSTM over a sequence: h_t = f'_t h_{t-1} + i'_t act(cand_t) with normalized gates
    f' = s(f) / (s(f) + s(i)), i' = s(i) / (s(f) + s(i)).

    Args:
        forget, input, cand: (B, T, H) pre-activations.
        h0, mask, activation, backend: as in `min_gru`.
    Returns:
        h: (B, T, H) in the inputs' dtype (whatever h0's dtype), computed in at least float32.
    """
    _check_seq("forget", forget)
    _check_seq("input", input, like=forget)
    _check_seq("cand", cand, like=forget)
    _check_h0(h0, forget)
    _check_mask(mask, forget)
    _check_activation(activation)
    impl = get_backend(forget, backend)
    if impl.min_lstm is not None:
        return impl.min_lstm(forget, input, cand, h0, mask, activation=activation)
    dtype, (forget, input, cand) = _unfused_inputs(mask, forget, input, cand)
    a, b = _apply_mask(*min_lstm_coeffs(forget, input, cand, activation), mask)
    return _run_scan(impl, a, b, h0, dtype)


def _check_packed(pre: Tensor, n: int) -> None:
    _check_seq("pre", pre)
    if pre.shape[-1] % n:
        raise ValueError(
            f"pre has {pre.shape[-1]} features, expected a multiple of {n} ({n} * H: the {n} pre-activations side by side)"
        )


def _run_packed(n: int, pre: Tensor, h0: Tensor | None, mask: Tensor | None, activation: str, backend: str | None) -> Tensor:
    """min_gru (n = 2) or min_lstm (n = 3) on packed pre-activations: the backend's packed kernel,
    or a split and the unpacked op where it has none."""
    _check_packed(pre, n)
    impl = get_backend(pre, backend)
    packed, unpacked = (impl.min_gru_packed, min_gru) if n == 2 else (impl.min_lstm_packed, min_lstm)
    if packed is None:
        return unpacked(*pre.chunk(n, dim=-1), h0, mask, activation=activation, backend=backend)
    first = pre[..., : pre.shape[-1] // n]  # for the checks' shapes only
    _check_h0(h0, first)
    _check_mask(mask, first)
    _check_activation(activation)
    return packed(pre, h0, mask, activation=activation)


def min_gru_packed(
    pre: Tensor,
    h0: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    activation: str = "g",
    backend: str | None = None,
) -> Tensor:
    """`min_gru` on packed pre-activations: ``pre`` (B, T, 2H) = [gate | cand] along the last dim,
    e.g. one Linear's output as it is. Same result as ``min_gru(*pre.chunk(2, -1), ...)``; a backend
    with a packed kernel (the "cpu" one) reads ``pre`` in place and writes the gradient wrt it into
    one (B, T, 2H) tensor, instead of two gradients that autograd then concatenates.

    Args: h0, mask, activation, backend as in `min_gru` (H = pre.shape[-1] // 2).
    Returns: h (B, T, H) in pre's dtype.
    """
    return _run_packed(2, pre, h0, mask, activation, backend)


def min_lstm_packed(
    pre: Tensor,
    h0: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    activation: str = "g",
    backend: str | None = None,
) -> Tensor:
    """`min_lstm` on packed pre-activations: ``pre`` (B, T, 3H) = [forget | input | cand]; otherwise
    as `min_gru_packed`."""
    return _run_packed(3, pre, h0, mask, activation, backend)


def step_kernels() -> ModuleType | None:
    """`minrnn.ops.step_cpu` (the fused CPU kernels of a generation step), or None where numba
    cannot run (then every step runs in plain PyTorch)."""
    return _load_kernels("step_cpu")


def _fused_step_ok(*xs: Tensor) -> bool:
    """Whether a step on these tensors may run in the fused CPU kernel: CPU, float32 / float64 /
    bfloat16, 2-D, and no gradient wanted (the kernel has no backward)."""
    if torch.compiler.is_compiling():
        return False
    grad = torch.is_grad_enabled()
    for x in xs:
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64, torch.bfloat16) or x.dim() != 2:
            return False
        if grad and x.requires_grad:
            return False
    return step_kernels() is not None


def min_gru_step(gate: Tensor, cand: Tensor, h: Tensor, *, activation: str = "g") -> Tensor:
    """One minGRU step: gate, cand, h (B, H) -> new h (B, H). Same math as `min_gru`; on CPU
    without autograd, one fused kernel (`minrnn.ops.step_cpu`)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if gate.shape == cand.shape == h.shape and _fused_step_ok(gate, cand, h):
        return step_kernels().cell_step((gate, cand), h, activation)
    a, b = min_gru_coeffs(gate, cand, activation)
    return (a * h + b).to(b.dtype)  # the inputs' dtype, as `min_gru`, whatever h's


def min_lstm_step(forget: Tensor, input: Tensor, cand: Tensor, h: Tensor, *, activation: str = "g") -> Tensor:
    """One minLSTM step: forget, input, cand, h (B, H) -> new h (B, H). Same math as `min_lstm`;
    on CPU without autograd, one fused kernel (`minrnn.ops.step_cpu`)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if forget.shape == input.shape == cand.shape == h.shape and _fused_step_ok(forget, input, cand, h):
        return step_kernels().cell_step((forget, input, cand), h, activation)
    a, b = min_lstm_coeffs(forget, input, cand, activation)
    return (a * h + b).to(b.dtype)
