"""Fused CPU kernels for one generation step: the elementwise work between a model's matmuls.

A minRNN block's step is four matmuls (the cell's input projection, the down-projection, the MLP's
two Linears) with elementwise work between them. Run op by op in PyTorch that work is ~40 small
ops per block, each costing more dispatch time than arithmetic at batch 1. Here each gap between
two matmuls is one numba call:

- `add_norm_conv`: residual add (x += pending), LayerNorm / RMSNorm, then optionally the causal
  depthwise conv against its state (the state shifted by one token is written to a new array);
- `cell`: minGRU / minLSTM update h' = a h + b from the projection's output (B, n_proj * H);
- `gelu_`: the MLP's exact GELU (erf), in place.

`embed` gathers embedding rows. The callers (`MinRNNBlock.fused_step`, `MinGRU.step` through
`minrnn.functional`) run the matmuls with torch on buffers they own and pass numpy views here.

Dtypes: arithmetic runs in the dtype of the residual / state arrays (float32, or float64 for
tests); any other input may be float32, float64 or bfloat16, the latter passed as a uint16 view
of its bits (numpy has no bfloat16). bfloat16 outputs (the next matmul's input when the weights
are bfloat16) are rounded to nearest even. So a bfloat16 model steps with bfloat16 matmuls while
its states, residual stream and all elementwise math stay float32.

The kernels are single-threaded: at the batch sizes of generation their work is a few microseconds
next to the matmuls, and numba's thread pool would only add wake-up latency.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload
from torch import Tensor

# The scan kernels' elementwise math: the same formulas (and the same accuracy) in both paths.
from minrnn.ops.scan_cpu import _JIT, _candidate, _exp, _lstm_terms, _sigmoid_pair

# numpy's error model: x / 0 gives inf instead of a Python ZeroDivisionError check per division,
# whose branch kept LLVM from vectorizing every loop that divides (the scan kernels get it from
# parallel=True).
_KJIT = dict(_JIT, error_model="numpy")

_HALF = np.float32(0.5)
_ONE = np.float32(1.0)


# ----------------------------------------------------------------------------- bfloat16 bits


@intrinsic
def _bf16_to_f32(typingctx, bits):
    """uint16 bits of a bfloat16 -> the float32 it denotes (exact: bf16 is float32's top half)."""

    def codegen(context, builder, signature, args):
        wide = builder.zext(args[0], ir.IntType(32))
        return builder.bitcast(builder.shl(wide, ir.Constant(ir.IntType(32), 16)), ir.FloatType())

    return types.float32(types.uint16), codegen


@intrinsic
def _f32_to_bf16(typingctx, x):
    """float32 -> uint16 bits of the nearest bfloat16 (ties to even; NaN stays a quiet NaN)."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        lsb = builder.and_(builder.lshr(bits, ir.Constant(i32, 16)), ir.Constant(i32, 1))
        rounded = builder.add(bits, builder.add(lsb, ir.Constant(i32, 0x7FFF)))
        is_nan = builder.fcmp_unordered("uno", args[0], args[0])
        out = builder.select(is_nan, ir.Constant(i32, 0x7FC00000), rounded)
        return builder.trunc(builder.lshr(out, ir.Constant(i32, 16)), ir.IntType(16))

    return types.uint16(types.float32), codegen


def _load(v, zero):
    """Element ``v`` (float32, float64 or bfloat16 bits) in the compute dtype of ``zero``."""
    raise NotImplementedError("only callable from numba code")


@overload(_load, inline="always")
def _load_impl(v, zero):
    if v == types.uint16:
        return lambda v, zero: zero + _bf16_to_f32(v)
    return lambda v, zero: zero + v


def _out(v, arr):
    """``v`` as an element of ``arr`` (bfloat16 bits for a uint16 array)."""
    raise NotImplementedError("only callable from numba code")


@overload(_out, inline="always")
def _out_impl(v, arr):
    if arr.dtype == types.uint16:
        return lambda v, arr: _f32_to_bf16(np.float32(v))
    return lambda v, arr: v


# ----------------------------------------------------------------------------- kernels


@njit(**_KJIT)
def _embed(table, idx, x, zero):
    """x = table[idx]; returns False (x untouched) if an id is outside [0, V)."""
    V = table.shape[0]
    for b in range(idx.shape[0]):
        if idx[b] < 0 or idx[b] >= V:
            return False
    for b in range(idx.shape[0]):
        row = table[idx[b]]
        for d in range(x.shape[1]):
            x[b, d] = _load(row[d], zero)
    return True


@njit(**dict(_KJIT, fastmath={"contract", "reassoc"}))  # reassoc: the norm's sums vectorize
def _add_norm_conv(x, add, has_add, nw, nb, has_nb, rms, eps, inv_d, cw, cb, cs, cs_out, has_conv, tmp, out):
    """x (B, D) += add (if has_add); v = norm(x); out = conv(v) with state cs (B, K - 1, D), or v.

    cw (D, K) is the conv's weight, cs_out receives the shifted state; tmp is a (K + 2, D)
    scratch in the compute dtype (that of x, eps and inv_d = 1 / D)."""
    B, D = x.shape
    zero = eps - eps
    v, acc = tmp[0], tmp[1]
    K = cw.shape[1]
    if has_conv:  # the taps tap-major once, so that the loops below read rows
        for j in range(K):
            wt = tmp[2 + j]
            for d in range(D):
                wt[d] = _load(cw[d, j], zero)
    for b in range(B):
        xr = x[b]
        if has_add:
            ar = add[b]
            for d in range(D):
                xr[d] = xr[d] + _load(ar[d], zero)
        mean = zero
        if not rms:
            s = zero
            for d in range(D):
                s += xr[d]
            mean = s * inv_d
        s2 = zero
        for d in range(D):
            t = xr[d] - mean
            s2 += t * t
        rstd = _ONE / np.sqrt(s2 * inv_d + eps)
        for d in range(D):
            v[d] = (xr[d] - mean) * rstd * _load(nw[d], zero)
        if has_nb:
            for d in range(D):
                v[d] += _load(nb[d], zero)
        orow = out[b]
        if not has_conv:
            for d in range(D):
                orow[d] = _out(v[d], orow)
            continue
        wl = tmp[2 + K - 1]
        for d in range(D):
            acc[d] = _load(cb[d], zero) + v[d] * wl[d]
        for j in range(K - 1):
            cr, wr = cs[b, j], tmp[2 + j]
            for d in range(D):
                acc[d] += _load(cr[d], zero) * wr[d]
        for d in range(D):
            orow[d] = _out(acc[d], orow)
        for j in range(K - 2):
            cr, orow2 = cs[b, j + 1], cs_out[b, j]
            for d in range(D):
                orow2[d] = _load(cr[d], zero)
        if K > 1:
            orow2 = cs_out[b, K - 2]
            for d in range(D):
                orow2[d] = v[d]


# The cells read each pre-activation as (flat storage, row stride, offset): a ``chunk`` of a
# Linear's output (B, n * H) is read in place, and every row is a contiguous slice, which
# vectorizes (2-D strided views did not: 4x slower).


@njit(**_KJIT)
def _gru_cell(g, gs, go, c, cs, co, h, h_out, hm, has_hm, identity, zero):
    B, H = h_out.shape
    for b in range(B):
        gr, cr = g[b * gs + go : b * gs + go + H], c[b * cs + co : b * cs + co + H]
        hr, orow = h[b], h_out[b]
        for k in range(H):
            z, a = _sigmoid_pair(_load(gr[k], zero))
            gc, _ = _candidate(_load(cr[k], zero), identity)
            orow[k] = a * _load(hr[k], zero) + z * gc
        if has_hm:
            mrow = hm[b]
            for k in range(H):
                mrow[k] = _out(orow[k], mrow)


@njit(**_KJIT)
def _lstm_cell(f, fs, fo, i, is_, io, c, cs, co, h, h_out, hm, has_hm, identity, zero):
    B, H = h_out.shape
    for b in range(B):
        fr, ir_ = f[b * fs + fo : b * fs + fo + H], i[b * is_ + io : b * is_ + io + H]
        cr, hr, orow = c[b * cs + co : b * cs + co + H], h[b], h_out[b]
        for k in range(H):
            u, v, _, _ = _lstm_terms(_load(fr[k], zero), _load(ir_[k], zero))
            s = _ONE / (u + v)
            gc, _ = _candidate(_load(cr[k], zero), identity)
            orow[k] = (v * s) * _load(hr[k], zero) + (u * s) * gc  # f' h + i' act(cand)
        if has_hm:
            mrow = hm[b]
            for k in range(H):
                mrow[k] = _out(orow[k], mrow)


@njit(inline="always", **_KJIT)
def _erf32(x):
    """erf for float32 as a rational function on [-4, 4] (Eigen's / XLA's ErfImpl32, a few ulp);
    branch-free so the loop over it vectorizes (libm's erf does not)."""
    x = min(max(x, np.float32(-4.0)), np.float32(4.0))
    x2 = x * x
    p = x2 * np.float32(-2.72614225801306e-10) + np.float32(2.77068142495902e-08)
    p = x2 * p + np.float32(-2.10102402082508e-06)
    p = x2 * p + np.float32(-5.69250639462346e-05)
    p = x2 * p + np.float32(-7.34990630326855e-04)
    p = x2 * p + np.float32(-2.95459980854025e-03)
    p = x2 * p + np.float32(-1.60960333262415e-02)
    q = x2 * np.float32(-1.45660718464996e-05) + np.float32(-2.13374055278905e-04)
    q = x2 * q + np.float32(-1.68282697438203e-03)
    q = x2 * q + np.float32(-7.37332916720468e-03)
    q = x2 * q + np.float32(-1.42647390514189e-02)
    return x * p / q


def _erf(x):
    raise NotImplementedError("only callable from numba code")


@overload(_erf, inline="always")
def _erf_impl(x):
    if x == types.float32:
        return lambda x: _erf32(x)
    return lambda x: math.erf(x)


@njit(**_KJIT)
def _gelu(m, out, r2):
    """out = GELU(m) = m * (1 + erf(m r2)) / 2 with r2 = 1 / sqrt(2), computed in r2's dtype."""
    B, W = m.shape
    zero = r2 - r2
    for b in range(B):
        mr, orow = m[b], out[b]
        for k in range(W):
            v = _load(mr[k], zero)
            orow[k] = _out(_HALF * v * (_ONE + _erf(v * r2)), orow)


# ----------------------------------------------------------------------------- torch <-> numpy


def as_array(t: Tensor) -> np.ndarray:
    """A numpy view of CPU tensor ``t`` (bfloat16 as its uint16 bits); the last dim must have unit
    stride (e.g. a ``chunk`` of a Linear's output), else it is copied."""
    t = t.detach()
    if t.dim() and t.stride(-1) != 1 and t.shape[-1] > 1:
        t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def from_array(a: np.ndarray, dtype: torch.dtype) -> Tensor:
    """The tensor viewing numpy array ``a`` (uint16 read as bfloat16 when ``dtype`` says so)."""
    if dtype == torch.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.bfloat16: np.uint16}
SUPPORTED = tuple(NUMPY_DTYPES)


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[np.ndarray, Tensor]:
    """A new array and the tensor viewing it (numpy allocates faster than torch.empty)."""
    a = np.empty(shape, NUMPY_DTYPES[dtype])
    return a, from_array(a, dtype)


def new_state(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[np.ndarray, Tensor]:
    """`empty`, for a state that the next step reads back: the tensor remembers its array, so
    `state_array` needs no conversion (they share memory: in-place changes show in both)."""
    a, t = empty(shape, dtype)
    t._minrnn_array = a
    return a, t


def state_array(t: Tensor) -> np.ndarray:
    """The numpy view of a state tensor (`new_state`'s, else `as_array`)."""
    a = getattr(t, "_minrnn_array", None)
    if a is None or a.ctypes.data != t.data_ptr():  # not ours, or a copy (deepcopy copies both apart)
        return as_array(t)
    return a


class _Buffers:
    """One block's scratch arrays (and tensors viewing them) for one batch size."""

    def __init__(self, B: int, D: int, H: int, n_proj: int, K: int, width: int, act: torch.dtype, compute: torch.dtype) -> None:
        self.compute_type = NUMPY_DTYPES[compute]
        self.u, self.u_t = empty((B, D), act)
        self.tmp = np.empty((2 + K, D), self.compute_type)
        pre, self.pre_t = empty((B, n_proj * H), act)
        self.pre_flat = pre.reshape(-1)
        self.hm, self.hm_t = empty((B, H), act) if act != compute else (None, None)
        self.down, self.down_t = empty((B, D), act)
        self.n2, self.n2_t = empty((B, D), act)
        self.mlp, self.mlp_t = empty((B, width), act)
        self.gelu, self.gelu_t = empty((B, width), act)
        self.mlp_out, self.mlp_out_t = empty((B, D), act)


class Workspace:
    """Scratch buffers reused from step to step (never part of a returned state): per block
    (`for_block`) and by name (`get`)."""

    def __init__(self) -> None:
        self._buffers: dict[object, object] = {}

    # Buffers are made outside inference mode: an inference tensor could not be written later
    # outside it (a step under torch.no_grad() after one under torch.inference_mode()).
    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[np.ndarray, Tensor]:
        key = (name, shape, dtype)
        buf = self._buffers.get(key)
        if buf is None:
            with torch.inference_mode(False):
                buf = self._buffers[key] = empty(shape, dtype)
        return buf

    def for_block(self, weights, B: int, act: torch.dtype, compute: torch.dtype) -> _Buffers:
        """The buffers of a block with these `StepWeights` (shared by blocks of one shape)."""
        w = weights
        width = 0 if w.mlp is None else w.mlp[0].shape[1]
        key = (B, w.dim, w.hidden, w.n_proj, w.kernel_size, width, act, compute)
        buf = self._buffers.get(key)
        if buf is None:
            with torch.inference_mode(False):
                buf = self._buffers[key] = _Buffers(B, w.dim, w.hidden, w.n_proj, w.kernel_size, width, act, compute)
        return buf


# ----------------------------------------------------------------------------- entry points


def embed(table: np.ndarray, idx: np.ndarray, x: np.ndarray) -> None:
    """x (B, D) = table (V, D)[idx (B,)] in x's dtype; a ValueError for ids outside [0, V)."""
    if not _embed(table, idx, x, x.dtype.type(0)):
        raise ValueError(f"idx holds token ids outside [0, vocab_size={table.shape[0]}): min {int(idx.min())}, max {int(idx.max())}")


def add_norm_conv(
    x: np.ndarray,
    add: np.ndarray | None,
    norm_weight: np.ndarray,
    norm_bias: np.ndarray | None,
    rms: bool,
    eps: float,
    out: np.ndarray,
    tmp: np.ndarray,
    conv: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> None:
    """x (B, D) += add; out (B, D) = norm(x) or, with ``conv`` = (weight (D, K), bias (D,), state
    (B, K - 1, D), new state (B, K - 1, D)), the causal conv of it. ``tmp`` is a (K + 2, D)
    scratch in x's dtype."""
    has_add = add is not None
    add = x if add is None else add
    nb = norm_weight if norm_bias is None else norm_bias
    if conv is None:
        cw, cb, cs, cs_out = _NO_CONV[x.dtype.type]
        has_conv = False
    else:
        (cw, cb, cs, cs_out), has_conv = conv, True
    t = x.dtype.type
    _add_norm_conv(
        x, add, has_add, norm_weight, nb, norm_bias is not None, rms, t(eps), t(1.0 / x.shape[1]), cw, cb, cs, cs_out, has_conv, tmp, out
    )  # fmt: skip


_NO_CONV = {
    t: (np.zeros((1, 1), t), np.zeros(1, t), np.zeros((1, 1, 1), t), np.zeros((1, 1, 1), t)) for t in (np.float32, np.float64)
}

Rows = tuple  # (flat storage (1-D), row stride, offset): B rows of H contiguous elements


def rows(a: np.ndarray, offset: int = 0) -> Rows:
    """A 2-D array as (flat storage, row stride, offset) (copied unless C-contiguous)."""
    a = np.ascontiguousarray(a)
    return a.reshape(-1), a.shape[1], offset


def cell(pre: tuple[Rows, ...], h: np.ndarray, h_out: np.ndarray, hm: np.ndarray | None, identity: bool) -> None:
    """h_out (B, H) = the cell's update of h (B, H) from its pre-activations, each given as
    `rows`: (gate, cand) for minGRU, (forget, input, cand) for minLSTM. Also written to ``hm``
    (B, H) in its dtype when given (the bfloat16 input of the next matmul)."""
    hm_ = h_out if hm is None else hm
    zero = h_out.dtype.type(0)
    if len(pre) == 2:
        _gru_cell(*pre[0], *pre[1], h, h_out, hm_, hm is not None, identity, zero)
    else:
        _lstm_cell(*pre[0], *pre[1], *pre[2], h, h_out, hm_, hm is not None, identity, zero)


def _tensor_rows(t: Tensor) -> Rows:
    """`rows` of a (B, H) CPU tensor, read in place when its H stride is 1."""
    t = t.detach()
    if t.stride(-1) != 1 and t.shape[-1] > 1:
        t = t.contiguous()
    B, H = t.shape
    step = t.stride(0) if B > 1 else H
    span = (B - 1) * step + H
    flat = torch.as_strided(t, (span,), (1,), t.storage_offset())
    return as_array(flat), step, 0


def cell_step(pre: tuple[Tensor, ...], h: Tensor, activation: str) -> Tensor:
    """One minGRU (pre = (gate, cand)) or minLSTM (pre = (forget, input, cand)) step on CPU
    tensors (B, H) -> new h (B, H), computed in float32 (float64 if any input is), returned in
    the dtype the torch formula would give (``minrnn.functional.min_gru_step``)."""
    dtype = h.dtype
    for t in pre:
        dtype = torch.promote_types(dtype, t.dtype)
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    out = np.empty(tuple(h.shape), NUMPY_DTYPES[compute])
    cell(tuple(_tensor_rows(t) for t in pre), as_array(h), out, None, activation == "identity")
    result = torch.from_numpy(out)
    return result if dtype == compute else result.to(dtype)


def gelu(m: np.ndarray, out: np.ndarray, compute: type = np.float32) -> None:
    """out = GELU(m) (exact erf form, as nn.GELU()), computed in ``compute``. ``out`` must not
    overlap ``m``: LLVM vectorizes the loop only for distinct arrays (5x)."""
    _gelu(m, out, compute(1 / math.sqrt(2)))


def probe() -> None:
    """Compile and run the cell kernel once; raises if numba cannot build it."""
    pre = np.zeros((1, 1), np.float32)
    h = np.ones((1, 1), np.float32)
    out = np.empty((1, 1), np.float32)
    cell((rows(pre), rows(pre)), h, out, None, False)
    if not math.isclose(float(out[0, 0]), 0.75):  # a = b = 1/2 * g(0) ... = 0.5 * 1 + 0.5 * 0.5
        raise RuntimeError(f"numba step probe returned {out[0, 0]}, expected 0.75")
