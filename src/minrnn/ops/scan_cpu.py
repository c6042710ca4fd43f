"""Fused CPU scans: numba kernels for minGRU, minLSTM and the plain linear scan.

Forward is one streaming pass over T: it reads the pre-activations (gate/cand, forget/input/cand,
or a/b), computes the coefficients a_t, b_t on the fly and writes h_t = a_t * h_{t-1} + b_t.
Backward is one reverse pass: it recomputes the coefficients from the pre-activations and runs
the adjoint recurrence

    d_t = grad_h_t + a_{t+1} d_{t+1},   dL/db_t = d_t,   dL/da_t = d_t h_{t-1},   dL/dh0 = a_1 d_1,

then chains through the coefficient formulas. Autograd keeps the inputs and the output h (the
output is usually kept alive by the next layer anyway, and recomputing it would cost a second
forward pass), nothing else.

Work is split into lanes (a batch row and a block of hidden units); inside a lane the loop over T
streams and the loop over the H block is contiguous, so LLVM vectorizes it. The lanes are cut into
`torch.get_num_threads()` contiguous ranges, each run by the same compiled kernel with the GIL
released (`nogil`), the first in the calling thread and the others in a small pool of Python
threads. numba's own parallel threading layer (`prange`) is not used: its "workqueue" layer aborts
the process when two threads launch kernels at once, its "omp" layer slows torch's own ops down
(benchmarks/NOTES-cpu.md), and choosing one would change numba's configuration for the whole
process. So any number of Python threads may call these ops at once, and minrnn never touches
numba's threading layer or thread count. `exp` is our own branch-free float32 version (`_exp32`): numba's `np.exp` calls the
scalar libm routine, which blocks vectorization and made the kernels about 2x slower
(benchmarks/NOTES-cpu.md).

Inputs may be strided views (the layers split one Linear output with ``chunk``): any (B, T, H)
tensor whose H stride is 1 is read in place through its flat storage and its B/T strides; others
are copied. float32 computes in float32, float64 in float64 (for gradcheck), bfloat16/float16
are converted to float32 first. Results come back in the inputs' dtype.

The public entry points are `linear_scan_cpu`, `min_gru_cpu` and `min_lstm_cpu`, and the packed
`min_gru_packed_cpu` / `min_lstm_packed_cpu` (all pre-activations in one (B, T, n * H) tensor, as
the layers' Linear produces them: read in place, and the gradient wrt it written by the kernel into
one buffer, no chunk/cat), each a `torch.library.custom_op` with a fake (meta) implementation and
a registered autograd formula,
so `torch.compile` treats them as opaque ops.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload
from torch import Tensor

from minrnn.ops import cpu_buffers

# "contract" lets LLVM fuse a * b + c into one FMA; it changes no special-value semantics.
# error_model="numpy": a float division by zero gives inf/NaN as in numpy and torch, instead of
# numba's default Python model, which tests every divisor and raises ZeroDivisionError. That
# branch per element kept LLVM from vectorizing every loop with a division (scalar `vdivss`
# instead of packed `vdivps`; benchmarks/NOTES-cpu.md, "Issue 13's kernels"). numba's prange code
# used the numpy model implicitly, which is why the kernels vectorized before they left prange.
# No kernel divides by something that can be 0 (u + v >= 1, 1 + exp(.) >= 1): no result changes.
_JIT = dict(cache=True, fastmath={"contract"}, error_model="numpy")
# Kernels: also release the GIL, so that the threads of `_launch` run them in parallel.
_KERNEL = dict(nogil=True, **_JIT)

# Typed constants: a Python float literal is float64 in numba and would promote float32 math.
_ZERO = np.float32(0.0)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)


# ----------------------------------------------------------------------------- elementwise math


@intrinsic
def _bits_as_f32(typingctx, bits):
    """Reinterpret the bits of an int32 as a float32 (used to build 2**n in `_exp32`)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


# Not inline="always" (numba's IR inliner trips over the select inside `_exp32`, with a warning);
# LLVM inlines them anyway.
@njit(**_JIT)
def _max(x, y):
    """max that returns NaN when either argument is NaN (the builtin max drops a NaN, like
    LLVM's maxnum; torch.maximum propagates it). Two compares and a select: still vectorizes."""
    return x if (x > y) | (x != x) else y


@njit(**_JIT)
def _min(x, y):
    """min that returns NaN when either argument is NaN (see `_max`)."""
    return x if (x < y) | (x != x) else y


@njit(inline="always", **_JIT)
def _exp32(x):
    """exp for float32, branch-free so loops over it vectorize (Cephes expf, ~1 ulp).

    Inputs below -87.3 return exp(-87.3) ~ 1.2e-38 instead of a subnormal or 0: every caller
    adds it to 1 or to a larger term, so the difference is invisible.
    """
    x = _min(_max(x, np.float32(-87.33654)), np.float32(88.72283))  # NaN stays NaN
    n = np.floor(x * np.float32(1.4426950408889634) + _HALF)  # x = n ln2 + r, |r| <= ln2 / 2
    r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + _ONE
    return p * _bits_as_f32((np.int32(n) + np.int32(127)) << np.int32(23))


def _exp(x):
    """exp in the dtype of x: `_exp32` for float32, libm for float64 (numba picks at compile time)."""
    raise NotImplementedError("only callable from numba code")


@overload(_exp, inline="always")
def _exp_impl(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    return lambda x: np.exp(x)


@njit(inline="always", **_JIT)
def _sigmoid_pair(x):
    """(sigmoid(x), sigmoid(-x)), each accurate and finite for any x (one exp of -|x|)."""
    e = _exp(-abs(x))
    r = _ONE / (_ONE + e)
    if x >= _ZERO:
        return r, e * r
    return e * r, r


@njit(inline="always", **_JIT)
def _candidate(c, identity):
    """(act(c), act'(c)) for the paper's g (c + 0.5 if c >= 0 else sigmoid(c)) or the identity."""
    if identity:
        return c, _ONE + _ZERO * c  # `_ONE + 0 * c` keeps the dtype of c
    e = _exp(-abs(c))
    r = _ONE / (_ONE + e)
    if c >= _ZERO:
        return c + _HALF, _ONE + _ZERO * c
    return e * r, e * r * r  # sigmoid(c) and sigmoid'(c) = sigmoid(c) sigmoid(-c)


@njit(inline="always", **_JIT)
def _lstm_terms(f, i):
    """Scaled sigmoid denominators of minLSTM's normalized gates.

    With u ~ 1 + exp(-f) and v ~ 1 + exp(-i), both scaled by exp(-m), m = max(0, -f, -i):
    f' = v / (u + v), i' = u / (u + v). Every exp argument is <= 0 and one of the terms is 1, so
    u + v >= 1: no overflow and no 0/0 even when both gates underflow (the same guarantee as
    `min_lstm_coeffs`' softplus form). Of the three terms exp(-m), exp(-f - m), exp(-i - m) one
    is exactly 1, so two exps suffice (instead of 2 softplus + sigmoid).
    Returns (u, v, exp(-f - m), exp(-i - m)).
    """
    # NaN-propagating min/max: a NaN in f or i must make both gates NaN, as in the maths.
    hi, lo = _max(-f, -i), _min(-f, -i)
    e_hi = _exp(-abs(hi))  # exp(-m) if hi > 0 (then the hi term is 1), else the hi term itself
    e_lo = _exp(lo - _max(hi, _ZERO))  # the lo term
    p, t_hi = (e_hi, _ONE + _ZERO * e_hi) if hi > _ZERO else (_ONE + _ZERO * e_hi, e_hi)
    ef, ei = (t_hi, e_lo) if -f >= -i else (e_lo, t_hi)
    return p + ef, p + ei, ef, ei


# ----------------------------------------------------------------------------- kernels
#
# A strided array is a tuple (flat storage, stride over B, stride over T); its H stride is 1.
# Inputs and the backward's gradients are strided: the packed ops read the gate/candidate columns
# of one Linear output in place and write their gradients into the columns of one (B, T, n * H)
# buffer. h and the forward's output are contiguous flat (B * T * H) arrays. `hb` is the width
# of a lane's H block.


@njit(inline="always", **_JIT)
def _row(x, b, t, lo, hi):
    """Elements [lo, hi) of row (b, t) of a strided input."""
    flat, sb, st = x
    base = b * sb + t * st
    return flat[base + lo : base + hi]


@njit(inline="always", **_JIT)
def _lane(lane, nblk, hb, H):
    """Lane number -> (batch row, first and past-last hidden unit of its block)."""
    b = lane // nblk
    lo = (lane % nblk) * hb
    return b, lo, min(lo + hb, H)  # ints: no NaN


@njit(**_KERNEL)
def _scan_fwd(a, b_, h0, out, B, T, H, hb, lane0, lane1):
    nblk = (H + hb - 1) // hb
    for lane in range(lane0, lane1):
        b, lo, hi = _lane(lane, nblk, hb, H)
        h = h0[b * H + lo : b * H + hi].copy()
        for t in range(T):
            ar, br = _row(a, b, t, lo, hi), _row(b_, b, t, lo, hi)
            o = out[(b * T + t) * H + lo : (b * T + t) * H + hi]
            for k in range(hi - lo):
                h[k] = ar[k] * h[k] + br[k]
                o[k] = h[k]


@njit(**_KERNEL)
def _scan_bwd(grad, a, h0, h_out, da, db, dh0, B, T, H, hb, lane0, lane1):
    nblk = (H + hb - 1) // hb
    for lane in range(lane0, lane1):
        b, lo, hi = _lane(lane, nblk, hb, H)
        carry = np.zeros(hi - lo, dtype=da.dtype)  # a_{t+1} d_{t+1}
        for t in range(T - 1, -1, -1):
            gr, ar = _row(grad, b, t, lo, hi), _row(a, b, t, lo, hi)
            off = (b * T + t) * H
            hp = h_out[off - H + lo : off - H + hi] if t > 0 else h0[b * H + lo : b * H + hi]
            dar, dbr = da[off + lo : off + hi], db[off + lo : off + hi]
            for k in range(hi - lo):
                d = gr[k] + carry[k]
                dar[k] = d * hp[k]
                dbr[k] = d
                carry[k] = ar[k] * d
        dh0[b * H + lo : b * H + hi] = carry


@njit(**_KERNEL)
def _min_gru_fwd(gate, cand, h0, mask, has_mask, identity, out, B, T, H, hb, lane0, lane1):
    nblk = (H + hb - 1) // hb
    for lane in range(lane0, lane1):
        b, lo, hi = _lane(lane, nblk, hb, H)
        h = h0[b * H + lo : b * H + hi].copy()
        for t in range(T):
            o = out[(b * T + t) * H + lo : (b * T + t) * H + hi]
            if has_mask and not mask[b * T + t]:  # padded step: a = 1, b = 0
                o[:] = h
                continue
            gr, cr = _row(gate, b, t, lo, hi), _row(cand, b, t, lo, hi)
            for k in range(hi - lo):
                z, a = _sigmoid_pair(gr[k])  # a = 1 - z = sigmoid(-gate)
                gc, _ = _candidate(cr[k], identity)
                h[k] = a * h[k] + z * gc
                o[k] = h[k]


@njit(**_KERNEL)
def _min_gru_bwd(grad, gate, cand, h0, mask, has_mask, identity, h_out, dgate, dcand, dh0, B, T, H, hb, lane0, lane1):
    nblk = (H + hb - 1) // hb
    for lane in range(lane0, lane1):
        b, lo, hi = _lane(lane, nblk, hb, H)
        carry = np.zeros(hi - lo, dtype=dh0.dtype)  # a_{t+1} d_{t+1}
        for t in range(T - 1, -1, -1):
            off = (b * T + t) * H
            gr = _row(grad, b, t, lo, hi)
            dgr, dcr = _row(dgate, b, t, lo, hi), _row(dcand, b, t, lo, hi)
            if has_mask and not mask[b * T + t]:  # a = 1, b = 0: d passes through, no input grads
                dgr[:] = 0
                dcr[:] = 0
                for k in range(hi - lo):
                    carry[k] += gr[k]
                continue
            xr, cr = _row(gate, b, t, lo, hi), _row(cand, b, t, lo, hi)
            hp = h_out[off - H + lo : off - H + hi] if t > 0 else h0[b * H + lo : b * H + hi]
            for k in range(hi - lo):
                d = gr[k] + carry[k]
                z, a = _sigmoid_pair(xr[k])
                gc, dgc = _candidate(cr[k], identity)
                # b = z gc, a = 1 - z, dz/dgate = z a:  dL/dgate = d z a (gc - h_{t-1})
                dgr[k] = d * z * a * (gc - hp[k])
                dcr[k] = d * z * dgc
                carry[k] = a * d
        dh0[b * H + lo : b * H + hi] = carry


@njit(**_KERNEL)
def _min_lstm_fwd(forget, input_, cand, h0, mask, has_mask, identity, out, B, T, H, hb, lane0, lane1):
    nblk = (H + hb - 1) // hb
    for lane in range(lane0, lane1):
        b, lo, hi = _lane(lane, nblk, hb, H)
        h = h0[b * H + lo : b * H + hi].copy()
        for t in range(T):
            o = out[(b * T + t) * H + lo : (b * T + t) * H + hi]
            if has_mask and not mask[b * T + t]:
                o[:] = h
                continue
            fr, ir_, cr = _row(forget, b, t, lo, hi), _row(input_, b, t, lo, hi), _row(cand, b, t, lo, hi)
            for k in range(hi - lo):
                u, v, _, _ = _lstm_terms(fr[k], ir_[k])
                s = _ONE / (u + v)
                gc, _ = _candidate(cr[k], identity)
                h[k] = (v * s) * h[k] + (u * s) * gc  # f' h + i' act(cand)
                o[k] = h[k]


@njit(**_KERNEL)
def _min_lstm_bwd(grad, forget, input_, cand, h0, mask, has_mask, identity, h_out, dforget, dinput, dcand, dh0, B, T, H, hb, lane0, lane1):
    nblk = (H + hb - 1) // hb
    for lane in range(lane0, lane1):
        b, lo, hi = _lane(lane, nblk, hb, H)
        carry = np.zeros(hi - lo, dtype=dh0.dtype)
        for t in range(T - 1, -1, -1):
            off = (b * T + t) * H
            gr = _row(grad, b, t, lo, hi)
            dfr, dir_, dcr = _row(dforget, b, t, lo, hi), _row(dinput, b, t, lo, hi), _row(dcand, b, t, lo, hi)
            if has_mask and not mask[b * T + t]:
                dfr[:] = 0
                dir_[:] = 0
                dcr[:] = 0
                for k in range(hi - lo):
                    carry[k] += gr[k]
                continue
            fr, ir_, cr = _row(forget, b, t, lo, hi), _row(input_, b, t, lo, hi), _row(cand, b, t, lo, hi)
            hp = h_out[off - H + lo : off - H + hi] if t > 0 else h0[b * H + lo : b * H + hi]
            for k in range(hi - lo):
                d = gr[k] + carry[k]
                u, v, ef, ei = _lstm_terms(fr[k], ir_[k])
                s = _ONE / (u + v)
                gc, dgc = _candidate(cr[k], identity)
                # i' = u / (u + v):  di'/df = -ef v / (u + v)^2,  di'/di = ei u / (u + v)^2
                q = d * (gc - hp[k]) * s * s
                dfr[k] = -q * v * ef
                dir_[k] = q * u * ei
                dcr[k] = d * (u * s) * dgc
                carry[k] = (v * s) * d
        dh0[b * H + lo : b * H + hi] = carry


# ----------------------------------------------------------------------------- torch <-> numba


# Below this many (B * T * H) elements a call runs in the calling thread alone: waking pool
# threads costs tens of microseconds, more than such a kernel takes (generation steps).
_PARALLEL_MIN = 1 << 15

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_owner = (0, 0)  # (pid, workers) of _pool


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """The shared pool of helper threads, with at least ``workers`` threads, in this process
    (a forked child, e.g. a DataLoader worker, inherits the pool object but not its threads)."""
    global _pool, _pool_owner
    with _pool_lock:
        pid = os.getpid()
        if _pool is None or _pool_owner[0] != pid or _pool_owner[1] < workers:
            # A replaced pool's idle threads exit once callers still using it let it go.
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minrnn-scan")
            _pool_owner = (pid, workers)
        return _pool


def _block_width(B: int, H: int, threads: int) -> int:
    """Lane width over H: whole rows when the batch alone gives every thread a few lanes
    (longest contiguous reads), narrower blocks (>= 32 wide) when B is small. A heuristic,
    not tuned by measurement."""
    want = 4 * threads
    if B >= want:
        return H
    nblk = min(-(-want // B), -(-H // 32))
    return -(-H // nblk)


def _launch(kernel: Callable, args: tuple, B: int, T: int, H: int) -> None:
    """Run ``kernel(*args, B, T, H, hb, lane0, lane1)`` over all lanes, split into
    `torch.get_num_threads()` contiguous ranges: one in this thread, the rest in the pool."""
    threads = max(1, torch.get_num_threads()) if B * T * H >= _PARALLEL_MIN else 1
    hb = _block_width(B, H, threads)
    lanes = B * -(-H // hb)
    n = min(threads, lanes)
    bounds = [lanes * k // n for k in range(n + 1)]
    pool = _thread_pool(n - 1) if n > 1 else None
    futures = [pool.submit(kernel, *args, B, T, H, hb, bounds[k], bounds[k + 1]) for k in range(1, n)]
    try:
        kernel(*args, B, T, H, hb, bounds[0], bounds[1])
    finally:
        for f in futures:  # they write into the outputs: wait for all, even if this one failed
            f.result()


def _compute_dtype(*xs: Tensor | None) -> torch.dtype:
    return torch.float64 if any(x is not None and x.dtype == torch.float64 for x in xs) else torch.float32


def _strided(x: Tensor, dtype: torch.dtype) -> tuple[np.ndarray, int, int]:
    """(flat storage, stride over B, stride over T) of a (B, T, H) tensor, without a copy when
    its dtype is the compute dtype and its H stride is 1 (e.g. a ``chunk`` of a Linear output)."""
    x = x.detach()
    # A broadcast dim (stride 0, e.g. the gradient of `h.sum()`) stays broadcast: copy one slice.
    sb, st = (0 if x.stride(d) == 0 else None for d in (0, 1))
    if sb == 0 or st == 0:
        x = x[: 1 if sb == 0 else None, : 1 if st == 0 else None]
    if x.dtype != dtype or (x.stride(2) != 1 and x.shape[2] > 1):
        x = x.to(dtype).contiguous()
    span = 1 + sum((n - 1) * s for n, s in zip(x.shape, x.stride()))
    flat = torch.as_strided(x, (span,), (1,), x.storage_offset())
    return flat.numpy(), x.stride(0) if sb is None else 0, x.stride(1) if st is None else 0


def _flat(x: Tensor, dtype: torch.dtype) -> np.ndarray:
    return x.detach().to(dtype).contiguous().view(-1).numpy()


def _h0(h0: Tensor | None, B: int, H: int, dtype: torch.dtype) -> np.ndarray:
    return np.zeros(B * H, dtype=np.float64 if dtype == torch.float64 else np.float32) if h0 is None else _flat(h0, dtype)


def _mask(mask: Tensor | None) -> tuple[np.ndarray, bool]:
    if mask is None:
        return np.ones(1, dtype=np.bool_), False
    return mask.detach().contiguous().view(-1).numpy(), True


def _is_identity(activation: str) -> bool:
    if activation not in ("g", "identity"):
        raise ValueError(f"activation must be one of ('g', 'identity'), got {activation!r}")
    return activation == "identity"


def _empty(*shape: int, dtype: torch.dtype) -> Tensor:
    """A fresh output buffer (h, a gradient): large ones come from `cpu_buffers`, which reuses the
    buffers of earlier calls that no tensor holds any more, so a training loop maps them once."""
    return cpu_buffers.empty(shape, dtype)


# ----------------------------------------------------------------------------- custom ops


@torch.library.custom_op("minrnn::linear_scan_cpu", mutates_args=(), device_types="cpu")
def linear_scan_cpu(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """h_t = a_t h_{t-1} + b_t. a, b: (B, T, H); h0: (B, H) or None -> h (B, T, H), dtype of b."""
    B, T, H = b.shape
    cd = _compute_dtype(a, b, h0)
    out = _empty(B, T, H, dtype=cd)
    if out.numel():
        _launch(_scan_fwd, (_strided(a, cd), _strided(b, cd), _h0(h0, B, H, cd), out.view(-1).numpy()), B, T, H)
    return out.to(b.dtype)


@torch.library.custom_op("minrnn::linear_scan_cpu_backward", mutates_args=(), device_types="cpu")
def _linear_scan_cpu_backward(grad: Tensor, a: Tensor, h0: Tensor | None, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    B, T, H = h.shape
    cd = _compute_dtype(a, h, h0)
    da, db, dh0 = _empty(B, T, H, dtype=cd), _empty(B, T, H, dtype=cd), torch.empty(B, H, dtype=cd)
    if da.numel():
        _launch(_scan_bwd, (
            _strided(grad, cd), _strided(a, cd), _h0(h0, B, H, cd), _flat(h, cd),
            da.view(-1).numpy(), db.view(-1).numpy(), dh0.view(-1).numpy(),
        ), B, T, H)  # fmt: skip
    return da, db, dh0


def _columns(pre: Tensor, n: int, dtype: torch.dtype) -> list[tuple[np.ndarray, int, int]]:
    """The n column blocks (B, T, H) of ``pre`` (B, T, n * H) as strided arrays, read in place
    (one conversion of the whole tensor first if its dtype is not the compute dtype)."""
    H = pre.shape[2] // n
    pre = pre.detach().to(dtype)
    return [_strided(pre[..., k * H : (k + 1) * H], dtype) for k in range(n)]


def _grad_columns(B: int, T: int, H: int, n: int, dtype: torch.dtype) -> tuple[Tensor, list[tuple[np.ndarray, int, int]]]:
    """A fresh (B, T, n * H) gradient buffer and its n column blocks as strided arrays, so that a
    backward kernel writes the gradient wrt a packed input in place (no torch.cat after)."""
    d = _empty(B, T, n * H, dtype=dtype)
    flat = d.view(-1).numpy()
    return d, [(flat[k * H :], T * n * H, n * H) for k in range(n)]


def _outputs(B: int, T: int, H: int, n: int, dtype: torch.dtype) -> tuple[list[Tensor], list[tuple[np.ndarray, int, int]]]:
    """n fresh contiguous (B, T, H) gradients and their strided arrays (the unpacked ops' backward)."""
    ds = [_empty(B, T, H, dtype=dtype) for _ in range(n)]
    return ds, [(d.view(-1).numpy(), T * H, H) for d in ds]


def _cell_forward(kernel: Callable, cols: list, h0: Tensor | None, mask: Tensor | None, activation: str,
                  B: int, T: int, H: int, dtype: torch.dtype) -> Tensor:  # fmt: skip
    """h (B, T, H) in the compute dtype from the strided pre-activation columns ``cols``."""
    out = _empty(B, T, H, dtype=dtype)
    if out.numel():
        m, has_mask = _mask(mask)
        args = (*cols, _h0(h0, B, H, dtype), m, has_mask, _is_identity(activation), out.view(-1).numpy())
        _launch(kernel, args, B, T, H)
    return out


def _cell_backward(kernel: Callable, grad: Tensor, cols: list, h0: Tensor | None, mask: Tensor | None, h: Tensor,
                   activation: str, dcols: list, dtype: torch.dtype) -> Tensor:  # fmt: skip
    """Runs the backward kernel, which writes the pre-activation gradients into ``dcols``; returns dh0."""
    B, T, H = h.shape
    dh0 = torch.empty(B, H, dtype=dtype)
    if h.numel():
        m, has_mask = _mask(mask)
        args = (_strided(grad, dtype), *cols, _h0(h0, B, H, dtype), m, has_mask, _is_identity(activation),
                _flat(h, dtype), *dcols, dh0.view(-1).numpy())  # fmt: skip
        _launch(kernel, args, B, T, H)
    return dh0


@torch.library.custom_op("minrnn::min_gru_cpu", mutates_args=(), device_types="cpu")
def _min_gru_op(gate: Tensor, cand: Tensor, h0: Tensor | None, mask: Tensor | None, activation: str) -> Tensor:
    B, T, H = gate.shape
    cd = _compute_dtype(gate, cand, h0)
    out = _cell_forward(_min_gru_fwd, [_strided(gate, cd), _strided(cand, cd)], h0, mask, activation, B, T, H, cd)
    return out.to(torch.promote_types(gate.dtype, cand.dtype))


@torch.library.custom_op("minrnn::min_gru_cpu_backward", mutates_args=(), device_types="cpu")
def _min_gru_cpu_backward(
    grad: Tensor, gate: Tensor, cand: Tensor, h0: Tensor | None, mask: Tensor | None, h: Tensor, activation: str
) -> tuple[Tensor, Tensor, Tensor]:
    B, T, H = gate.shape
    cd = _compute_dtype(gate, cand, h0)
    (dgate, dcand), dcols = _outputs(B, T, H, 2, cd)
    dh0 = _cell_backward(_min_gru_bwd, grad, [_strided(gate, cd), _strided(cand, cd)], h0, mask, h, activation, dcols, cd)
    return dgate, dcand, dh0


@torch.library.custom_op("minrnn::min_lstm_cpu", mutates_args=(), device_types="cpu")
def _min_lstm_op(
    forget: Tensor, input: Tensor, cand: Tensor, h0: Tensor | None, mask: Tensor | None, activation: str
) -> Tensor:
    B, T, H = forget.shape
    cd = _compute_dtype(forget, input, cand, h0)
    cols = [_strided(forget, cd), _strided(input, cd), _strided(cand, cd)]
    out = _cell_forward(_min_lstm_fwd, cols, h0, mask, activation, B, T, H, cd)
    return out.to(torch.promote_types(torch.promote_types(forget.dtype, input.dtype), cand.dtype))


@torch.library.custom_op("minrnn::min_lstm_cpu_backward", mutates_args=(), device_types="cpu")
def _min_lstm_cpu_backward(
    grad: Tensor, forget: Tensor, input: Tensor, cand: Tensor, h0: Tensor | None, mask: Tensor | None, h: Tensor,
    activation: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    B, T, H = forget.shape
    cd = _compute_dtype(forget, input, cand, h0)
    (dforget, dinput, dcand), dcols = _outputs(B, T, H, 3, cd)
    cols = [_strided(forget, cd), _strided(input, cd), _strided(cand, cd)]
    dh0 = _cell_backward(_min_lstm_bwd, grad, cols, h0, mask, h, activation, dcols, cd)
    return dforget, dinput, dcand, dh0


# Packed ops: the pre-activations as one (B, T, n * H) tensor, the layer's Linear output as it is
# (columns: gate | cand, or forget | input | cand). Same kernels; the backward writes d(pre) into
# one buffer, so autograd needs no `chunk` backward (a torch.cat of the n gradients).
_PACKED_KERNELS = {2: (_min_gru_fwd, _min_gru_bwd), 3: (_min_lstm_fwd, _min_lstm_bwd)}


def _packed_forward(n: int, pre: Tensor, h0: Tensor | None, mask: Tensor | None, activation: str) -> Tensor:
    B, T, nH = pre.shape
    cd = _compute_dtype(pre, h0)
    out = _cell_forward(_PACKED_KERNELS[n][0], _columns(pre, n, cd), h0, mask, activation, B, T, nH // n, cd)
    return out.to(pre.dtype)


def _packed_backward(n: int, grad: Tensor, pre: Tensor, h0: Tensor | None, mask: Tensor | None, h: Tensor,
                     activation: str) -> tuple[Tensor, Tensor]:  # fmt: skip
    B, T, H = h.shape
    cd = _compute_dtype(pre, h0)
    dpre, dcols = _grad_columns(B, T, H, n, cd)
    dh0 = _cell_backward(_PACKED_KERNELS[n][1], grad, _columns(pre, n, cd), h0, mask, h, activation, dcols, cd)
    return dpre, dh0


@torch.library.custom_op("minrnn::min_gru_packed_cpu", mutates_args=(), device_types="cpu")
def _min_gru_packed_op(pre: Tensor, h0: Tensor | None, mask: Tensor | None, activation: str) -> Tensor:
    return _packed_forward(2, pre, h0, mask, activation)


@torch.library.custom_op("minrnn::min_gru_packed_cpu_backward", mutates_args=(), device_types="cpu")
def _min_gru_packed_backward(
    grad: Tensor, pre: Tensor, h0: Tensor | None, mask: Tensor | None, h: Tensor, activation: str
) -> tuple[Tensor, Tensor]:
    return _packed_backward(2, grad, pre, h0, mask, h, activation)


@torch.library.custom_op("minrnn::min_lstm_packed_cpu", mutates_args=(), device_types="cpu")
def _min_lstm_packed_op(pre: Tensor, h0: Tensor | None, mask: Tensor | None, activation: str) -> Tensor:
    return _packed_forward(3, pre, h0, mask, activation)


@torch.library.custom_op("minrnn::min_lstm_packed_cpu_backward", mutates_args=(), device_types="cpu")
def _min_lstm_packed_backward(
    grad: Tensor, pre: Tensor, h0: Tensor | None, mask: Tensor | None, h: Tensor, activation: str
) -> tuple[Tensor, Tensor]:
    return _packed_backward(3, grad, pre, h0, mask, h, activation)


# ----------------------------------------------------------------------------- shapes for torch.compile


def _like(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    return x.new_empty(x.shape, dtype=dtype or x.dtype)


@linear_scan_cpu.register_fake
def _(a, b, h0=None):
    return _like(b)


@_linear_scan_cpu_backward.register_fake
def _(grad, a, h0, h):
    cd = _compute_dtype(a, h, h0)
    return _like(h, cd), _like(h, cd), h.new_empty(h.shape[0], h.shape[2], dtype=cd)


@_min_gru_op.register_fake
def _(gate, cand, h0, mask, activation):
    return _like(gate, torch.promote_types(gate.dtype, cand.dtype))


@_min_gru_cpu_backward.register_fake
def _(grad, gate, cand, h0, mask, h, activation):
    cd = _compute_dtype(gate, cand, h0)
    return _like(gate, cd), _like(gate, cd), gate.new_empty(gate.shape[0], gate.shape[2], dtype=cd)


@_min_lstm_op.register_fake
def _(forget, input, cand, h0, mask, activation):
    return _like(forget, torch.promote_types(torch.promote_types(forget.dtype, input.dtype), cand.dtype))


@_min_lstm_cpu_backward.register_fake
def _(grad, forget, input, cand, h0, mask, h, activation):
    cd = _compute_dtype(forget, input, cand, h0)
    dh0 = forget.new_empty(forget.shape[0], forget.shape[2], dtype=cd)
    return _like(forget, cd), _like(forget, cd), _like(forget, cd), dh0


def _packed_fake(n: int):
    def forward(pre, h0, mask, activation):
        return pre.new_empty(pre.shape[0], pre.shape[1], pre.shape[2] // n)

    def backward(grad, pre, h0, mask, h, activation):
        cd = _compute_dtype(pre, h0)
        return _like(pre, cd), pre.new_empty(pre.shape[0], pre.shape[2] // n, dtype=cd)

    return forward, backward


for _op, _bwd, _n in ((_min_gru_packed_op, _min_gru_packed_backward, 2), (_min_lstm_packed_op, _min_lstm_packed_backward, 3)):
    _fake_forward, _fake_backward = _packed_fake(_n)
    _op.register_fake(_fake_forward)
    _bwd.register_fake(_fake_backward)


# ----------------------------------------------------------------------------- autograd


def _grad_h0(dh0: Tensor, h0: Tensor | None) -> Tensor | None:
    return None if h0 is None else dh0.to(h0.dtype)


def _scan_setup(ctx, inputs, output):
    a, b, h0 = inputs
    ctx.save_for_backward(a, h0, output)
    ctx.dtypes = (a.dtype, b.dtype)


def _scan_backward(ctx, grad):
    a, h0, h = ctx.saved_tensors
    da, db, dh0 = _linear_scan_cpu_backward(grad, a, h0, h)
    return da.to(ctx.dtypes[0]), db.to(ctx.dtypes[1]), _grad_h0(dh0, h0)


linear_scan_cpu.register_autograd(_scan_backward, setup_context=_scan_setup)


def _gru_setup(ctx, inputs, output):
    gate, cand, h0, mask, activation = inputs
    ctx.save_for_backward(gate, cand, h0, mask, output)
    ctx.activation = activation


def _gru_backward(ctx, grad):
    gate, cand, h0, mask, h = ctx.saved_tensors
    dgate, dcand, dh0 = _min_gru_cpu_backward(grad, gate, cand, h0, mask, h, ctx.activation)
    return dgate.to(gate.dtype), dcand.to(cand.dtype), _grad_h0(dh0, h0), None, None


_min_gru_op.register_autograd(_gru_backward, setup_context=_gru_setup)


def _lstm_setup(ctx, inputs, output):
    forget, input, cand, h0, mask, activation = inputs
    ctx.save_for_backward(forget, input, cand, h0, mask, output)
    ctx.activation = activation


def _lstm_backward(ctx, grad):
    forget, input, cand, h0, mask, h = ctx.saved_tensors
    dforget, dinput, dcand, dh0 = _min_lstm_cpu_backward(grad, forget, input, cand, h0, mask, h, ctx.activation)
    return dforget.to(forget.dtype), dinput.to(input.dtype), dcand.to(cand.dtype), _grad_h0(dh0, h0), None, None


_min_lstm_op.register_autograd(_lstm_backward, setup_context=_lstm_setup)


def _packed_setup(ctx, inputs, output):
    pre, h0, mask, activation = inputs
    ctx.save_for_backward(pre, h0, mask, output)
    ctx.activation = activation


def _packed_autograd(backward_op: Callable) -> Callable:
    def backward(ctx, grad):
        pre, h0, mask, h = ctx.saved_tensors
        dpre, dh0 = backward_op(grad, pre, h0, mask, h, ctx.activation)
        return dpre.to(pre.dtype), _grad_h0(dh0, h0), None, None

    return backward


_min_gru_packed_op.register_autograd(_packed_autograd(_min_gru_packed_backward), setup_context=_packed_setup)
_min_lstm_packed_op.register_autograd(_packed_autograd(_min_lstm_packed_backward), setup_context=_packed_setup)


# ----------------------------------------------------------------------------- public functions


def min_gru_cpu(
    gate: Tensor, cand: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, activation: str = "g"
) -> Tensor:
    """Fused minGRU on CPU. gate, cand: (B, T, H); h0: (B, H) or None; mask: (B, T) bool or None."""
    return _min_gru_op(gate, cand, h0, mask, activation)


def min_lstm_cpu(
    forget: Tensor,
    input: Tensor,
    cand: Tensor,
    h0: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    activation: str = "g",
) -> Tensor:
    """Fused minLSTM on CPU. forget, input, cand: (B, T, H); h0: (B, H) or None; mask: (B, T) bool."""
    return _min_lstm_op(forget, input, cand, h0, mask, activation)


def min_gru_packed_cpu(
    pre: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, activation: str = "g"
) -> Tensor:
    """Fused minGRU on CPU on packed pre-activations. pre: (B, T, 2H) = [gate | cand] (e.g. one
    Linear's output, read in place); h0: (B, H) or None; mask: (B, T) bool -> h (B, T, H). The
    gradient wrt pre comes back as one (B, T, 2H) tensor, written in place by the kernel."""
    return _min_gru_packed_op(pre, h0, mask, activation)


def min_lstm_packed_cpu(
    pre: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, activation: str = "g"
) -> Tensor:
    """Fused minLSTM on CPU on packed pre-activations. pre: (B, T, 3H) = [forget | input | cand];
    otherwise as `min_gru_packed_cpu`."""
    return _min_lstm_packed_op(pre, h0, mask, activation)


def probe() -> None:
    """Compile and run the smallest kernel once; raises if numba cannot build code on this machine."""
    h = linear_scan_cpu(torch.ones(1, 2, 1), torch.ones(1, 2, 1))
    if not math.isclose(float(h[0, -1, 0]), 2.0):
        raise RuntimeError(f"numba linear scan probe returned {h.flatten().tolist()}, expected [1.0, 2.0]")
