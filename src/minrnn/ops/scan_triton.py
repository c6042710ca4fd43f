"""Fused Triton kernels for the linear scan, minGRU and minLSTM on (B, T, H) tensors.

One forward and one backward kernel serve all three ops; the cell is a compile-time switch:

    CELL_LINEAR: a, b given                                   h_t = a_t h_{t-1} + b_t
    CELL_GRU:    a = sigmoid(-gate), b = sigmoid(gate) act(cand)
    CELL_LSTM:   a = f', b = i' act(cand)  (normalized gates, as `minrnn.ops.activations`)

Design (the "chunked scan with carried state"):

* Each program owns one batch row and a block of BLOCK_H channels, and walks T in chunks of
  BLOCK_T steps. Per chunk it loads a (BLOCK_T, BLOCK_H) tile of every input (one wide,
  coalesced load: H is the contiguous axis), computes the coefficients in registers in float32,
  runs `tl.associative_scan` along T with the combine of affine maps
  (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2), adds the state carried in from the previous chunk
  (h = A_cum * carry + B_cum) and stores h in the input dtype. The last row is the next carry.
  All arithmetic is in linear space (no logs), so any sign of cand/h0 works and float32 error
  does not grow with T.
* Why tiles and not a plain loop over t with one (BLOCK_H,) vector per step: the loop issues one
  small load per step and waits on memory latency T times per program; a (BLOCK_T, BLOCK_H) tile
  puts BLOCK_T rows of loads in flight at once, which reaching memory bandwidth needs when
  B * H / BLOCK_H programs are too few to hide latency (B=64, H=256: 512 programs for 132 SMs).
  That is the expectation, not yet a measurement: `benchmarks/gpu_scan.py` times both on a GPU
  (`linear_scan_loop_forward` is the loop version).
* Backward walks the chunks in reverse. With d_t = dL/dh_t (total), d_t = g_t + a_{t+1} d_{t+1}
  is the same scan run backwards in time: the tile is loaded with its rows in reverse time order
  (so the forward `associative_scan` does the reverse scan) and a_{t+1} is recomputed from the
  pre-activations one row further on (those rows sit in cache). Then dL/db_t = d_t,
  dL/da_t = d_t h_{t-1}, chained through the coefficient formulas, and dL/dh0 = a_0 d_0.
  The coefficients are recomputed, never stored (the price: the backward evaluates the gate math
  twice per element, for rows t and t+1). Autograd keeps the inputs, h0, mask and the output h,
  whose previous row gives h_{t-1}: no extra memory where the next op saves h anyway (the
  down-projection of a MinRNNBlock with expansion != 1), else one (B, T, H) tensor in the input
  dtype. With bf16 inputs h_{t-1} is thus the bf16-rounded state, an error at the level of the
  inputs' own rounding.
* Inputs may be bf16/fp16/fp32 with any strides on B and T (e.g. the `chunk` views of one
  projection output), contiguous along H; state and arithmetic are float32; the output and the
  gradients have the inputs' dtypes.

The ops are `torch.library.custom_op`s with fake and autograd registrations, so `torch.compile`
traces through them. On a machine without a GPU, the kernels run on CPU tensors with
``TRITON_INTERPRET=1`` (set before triton is imported), which is how the tests run them.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["linear_scan", "min_gru", "min_lstm", "linear_scan_loop_forward", "CONFIG"]

CELL_LINEAR, CELL_GRU, CELL_LSTM = 0, 1, 2
_CELLS = {"linear": CELL_LINEAR, "gru": CELL_GRU, "lstm": CELL_LSTM}
_ACTS = {"g": 0, "identity": 1}

# Launch parameters. A 32 x 32 tile over 4 warps is 8 elements per thread per tensor: compiled for
# sm_90 that keeps every kernel free of register spills (the minLSTM backward at 145-170 registers;
# 16 elements per thread spill), see `benchmarks/triton_resources.py`. num_stages > 1 asks Triton to
# software-pipeline the chunk loop's loads. Not yet timed on a GPU: `benchmarks/gpu_scan.py --sweep`
# times the alternatives on a lent one.
CONFIG: dict[str, int] = {"block_t": 32, "block_h": 32, "num_warps": 4, "num_stages": 1}


# ----------------------------------------------------------------------------- elementwise math


@triton.jit
def _sigmoid_pair(x):
    """(sigmoid(x), sigmoid(-x)) with one exp, both accurate when tiny (no 1 - s cancellation)."""
    e = tl.exp(-tl.abs(x))
    r = 1.0 / (1.0 + e)
    big, small = r, e * r  # sigmoid(|x|), sigmoid(-|x|)
    pos = x >= 0
    return tl.where(pos, big, small), tl.where(pos, small, big)


@triton.jit
def _softplus(x):
    """log(1 + exp(x)) without overflow; log1p by its series where exp(-|x|) is tiny."""
    u = tl.exp(-tl.abs(x))
    log1p_u = tl.where(u < 1e-4, u * (1.0 - 0.5 * u), tl.log(1.0 + u))
    return tl.maximum(x, 0.0, propagate_nan=tl.PropagateNan.ALL) + log1p_u  # NaN stays NaN


@triton.jit
def _candidate(c, ACT: tl.constexpr):
    """act(c): the paper's g (x + 0.5 for x >= 0, sigmoid(x) otherwise) or the identity."""
    if ACT == 0:
        s, _ = _sigmoid_pair(c)
        out = tl.where(c >= 0, c + 0.5, s)
    else:
        out = c
    return out


@triton.jit
def _candidate_grad(c, ACT: tl.constexpr):
    """d act(c) / dc."""
    if ACT == 0:
        s, s_neg = _sigmoid_pair(c)
        out = tl.where(c >= 0, 1.0, s * s_neg)
    else:
        out = tl.full(c.shape, 1.0, tl.float32)
    return out


@triton.jit
def _coeffs(x1, x2, x3, CELL: tl.constexpr, ACT: tl.constexpr):
    """Scan coefficients (a, b) from the pre-activations, the math of `minrnn.ops.activations`."""
    if CELL == 0:
        a = x1
        b = x2
    elif CELL == 1:  # x1 = gate, x2 = cand
        z, a = _sigmoid_pair(x1)
        b = z * _candidate(x2, ACT)
    else:  # x1 = forget, x2 = input, x3 = cand; f' = sigmoid(-diff), i' = sigmoid(diff)
        diff = _softplus(-x1) - _softplus(-x2)
        w, a = _sigmoid_pair(diff)
        b = w * _candidate(x3, ACT)
    return a, b


@triton.jit
def _coeffs_bwd(x1, x2, x3, da, db, CELL: tl.constexpr, ACT: tl.constexpr):
    """Chain dL/da, dL/db through `_coeffs` to the pre-activations: (dL/dx1, dL/dx2, dL/dx3)."""
    if CELL == 0:
        g1 = da
        g2 = db
        g3 = db  # unused
    elif CELL == 1:
        z, a = _sigmoid_pair(x1)
        # a = 1 - z, b = z c~: da/dgate = -z a, db/dgate = z a c~
        g1 = z * a * (db * _candidate(x2, ACT) - da)
        g2 = db * z * _candidate_grad(x2, ACT)
        g3 = g2  # unused
    else:
        diff = _softplus(-x1) - _softplus(-x2)
        w, a = _sigmoid_pair(diff)
        g_diff = a * w * (db * _candidate(x3, ACT) - da)
        # d softplus(-x) / dx = -sigmoid(-x); diff = softplus(-f) - softplus(-i)
        _, sf_neg = _sigmoid_pair(x1)
        _, si_neg = _sigmoid_pair(x2)
        g1 = -g_diff * sf_neg
        g2 = g_diff * si_neg
        g3 = db * w * _candidate_grad(x3, ACT)
    return g1, g2, g3


@triton.jit
def _combine(a1, b1, a2, b2):
    """Compose two steps of h -> a h + b: first (a1, b1), then (a2, b2)."""
    return a1 * a2, a2 * b1 + b2


# ----------------------------------------------------------------------------- tile helpers


@triton.jit
def _load_tile(X, sb, st, pid_b, t, offs_h, T, H):
    """Rows t (BLOCK_T,) x channels offs_h of batch row pid_b as float32; 0 outside [0, T) x [0, H)."""
    ptrs = X + pid_b * sb + t[:, None] * st + offs_h[None, :]
    inside = (t[:, None] >= 0) & (t[:, None] < T) & (offs_h[None, :] < H)
    return tl.load(ptrs, mask=inside, other=0.0).to(tl.float32)


@triton.jit
def _real_steps(MASK, smb, smt, pid_b, t, T, HAS_MASK: tl.constexpr):
    """(BLOCK_T, 1) bool: step t lies in [0, T) and is not padding."""
    real = (t >= 0) & (t < T)
    if HAS_MASK:
        real = real & (tl.load(MASK + pid_b * smb + t * smt, mask=real, other=0) != 0)
    return real[:, None]


@triton.jit
def _load_coeffs(
    X1, X2, X3, MASK, s1b, s1t, s2b, s2t, s3b, s3t, smb, smt, pid_b, t, offs_h, T, H,
    CELL: tl.constexpr, ACT: tl.constexpr, HAS_MASK: tl.constexpr,
):
    """(a, b) for rows t; padding and rows outside [0, T) become the identity step a = 1, b = 0."""
    x1 = _load_tile(X1, s1b, s1t, pid_b, t, offs_h, T, H)
    x2 = _load_tile(X2, s2b, s2t, pid_b, t, offs_h, T, H)
    x3 = x2
    if CELL == 2:
        x3 = _load_tile(X3, s3b, s3t, pid_b, t, offs_h, T, H)
    a, b = _coeffs(x1, x2, x3, CELL, ACT)
    real = _real_steps(MASK, smb, smt, pid_b, t, T, HAS_MASK)
    return tl.where(real, a, 1.0), tl.where(real, b, 0.0)


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _scan_fwd_kernel(
    X1, X2, X3, H0, MASK, OUT,
    T, H,
    s1b, s1t, s2b, s2t, s3b, s3t, smb, smt, sob, sot,
    CELL: tl.constexpr, ACT: tl.constexpr, HAS_H0: tl.constexpr, HAS_MASK: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, NUM_STAGES: tl.constexpr,
):
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)  # int64: B * T * H may pass 2**31
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_t = tl.arange(0, BLOCK_T)
    is_last_row = offs_t[:, None] == BLOCK_T - 1
    if HAS_H0:
        carry = tl.load(H0 + pid_b * H + offs_h, mask=offs_h < H, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BLOCK_H], dtype=tl.float32)
    for t0 in tl.range(0, T, BLOCK_T, num_stages=NUM_STAGES):
        t = t0 + offs_t
        a, b = _load_coeffs(
            X1, X2, X3, MASK, s1b, s1t, s2b, s2t, s3b, s3t, smb, smt, pid_b, t, offs_h, T, H,
            CELL, ACT, HAS_MASK,
        )
        a_cum, b_cum = tl.associative_scan((a, b), 0, _combine)
        h = a_cum * carry[None, :] + b_cum
        inside = (t[:, None] < T) & (offs_h[None, :] < H)
        tl.store(OUT + pid_b * sob + t[:, None] * sot + offs_h[None, :], h.to(OUT.dtype.element_ty), mask=inside)
        # Rows past T are identity steps, so the last row is the state after step min(t0+BLOCK_T, T) - 1.
        carry = tl.sum(tl.where(is_last_row, h, 0.0), axis=0)


@triton.jit
def _scan_bwd_kernel(
    GRAD, OUT, X1, X2, X3, H0, MASK, G1, G2, G3, GH0,
    T, H,
    sgb, sgt, sob, sot, s1b, s1t, s2b, s2t, s3b, s3t, smb, smt,
    CELL: tl.constexpr, ACT: tl.constexpr, HAS_H0: tl.constexpr, HAS_MASK: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, NUM_STAGES: tl.constexpr,
):
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_r = tl.arange(0, BLOCK_T)
    is_last_row = offs_r[:, None] == BLOCK_T - 1
    n_chunks = tl.cdiv(T, BLOCK_T)
    carry = tl.zeros([BLOCK_H], dtype=tl.float32)  # d_{t} of the step just after the chunk
    for c in tl.range(0, n_chunks, num_stages=NUM_STAGES):
        # Rows in reverse time order: the forward associative scan then runs backwards in time.
        t = (n_chunks - 1 - c) * BLOCK_T + (BLOCK_T - 1 - offs_r)
        # d_t = g_t + a_{t+1} d_{t+1}. Past the end g = 0, so d stays 0 whatever a is there.
        a_next, _ = _load_coeffs(
            X1, X2, X3, MASK, s1b, s1t, s2b, s2t, s3b, s3t, smb, smt, pid_b, t + 1, offs_h, T, H,
            CELL, ACT, HAS_MASK,
        )
        g = _load_tile(GRAD, sgb, sgt, pid_b, t, offs_h, T, H)
        a_cum, g_cum = tl.associative_scan((a_next, g), 0, _combine)
        d = a_cum * carry[None, :] + g_cum
        carry = tl.sum(tl.where(is_last_row, d, 0.0), axis=0)

        # dL/da_t = d_t h_{t-1}, dL/db_t = d_t on real steps (padding has constant a = 1, b = 0).
        h_prev = _load_tile(OUT, sob, sot, pid_b, t - 1, offs_h, T, H)
        if HAS_H0:
            h0 = tl.load(H0 + pid_b * H + offs_h, mask=offs_h < H, other=0.0).to(tl.float32)
            h_prev = tl.where(t[:, None] == 0, h0[None, :], h_prev)
        real = _real_steps(MASK, smb, smt, pid_b, t, T, HAS_MASK)
        da = tl.where(real, d * h_prev, 0.0)
        db = tl.where(real, d, 0.0)

        x1 = _load_tile(X1, s1b, s1t, pid_b, t, offs_h, T, H)
        x2 = _load_tile(X2, s2b, s2t, pid_b, t, offs_h, T, H)
        x3 = x2
        if CELL == 2:
            x3 = _load_tile(X3, s3b, s3t, pid_b, t, offs_h, T, H)
        g1, g2, g3 = _coeffs_bwd(x1, x2, x3, da, db, CELL, ACT)
        # Padding gets no gradient: da = db = 0 there, but 0 * (a NaN/Inf input's derivative) is NaN.
        g1 = tl.where(real, g1, 0.0)
        g2 = tl.where(real, g2, 0.0)
        g3 = tl.where(real, g3, 0.0)
        inside = (t[:, None] < T) & (offs_h[None, :] < H)
        offs = pid_b * sob + t[:, None] * sot + offs_h[None, :]  # gradients are contiguous like OUT
        tl.store(G1 + offs, g1.to(G1.dtype.element_ty), mask=inside)
        tl.store(G2 + offs, g2.to(G2.dtype.element_ty), mask=inside)
        if CELL == 2:
            tl.store(G3 + offs, g3.to(G3.dtype.element_ty), mask=inside)

    if HAS_H0:
        # carry is d_0 now; dL/dh0 = a_0 d_0 (a_0 = 1 if step 0 is padding).
        a, _ = _load_coeffs(
            X1, X2, X3, MASK, s1b, s1t, s2b, s2t, s3b, s3t, smb, smt, pid_b, offs_r, offs_h, T, H,
            CELL, ACT, HAS_MASK,
        )
        a0 = tl.sum(tl.where(offs_r[:, None] == 0, a, 0.0), axis=0)
        tl.store(GH0 + pid_b * H + offs_h, a0 * carry, mask=offs_h < H)


@triton.jit
def _scan_fwd_loop_kernel(A, B, OUT, T, H, sab, sat, sbb, sbt, sob, sot, BLOCK_H: tl.constexpr):
    """The alternative design, kept for the benchmark: one (BLOCK_H,) row per step, in order."""
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    m = offs_h < H
    h = tl.zeros([BLOCK_H], dtype=tl.float32)
    for t in range(0, T):
        a = tl.load(A + pid_b * sab + t * sat + offs_h, mask=m, other=0.0).to(tl.float32)
        b = tl.load(B + pid_b * sbb + t * sbt + offs_h, mask=m, other=0.0).to(tl.float32)
        h = a * h + b
        tl.store(OUT + pid_b * sob + t * sot + offs_h, h.to(OUT.dtype.element_ty), mask=m)


# ----------------------------------------------------------------------------- launchers


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _check_device(x: Tensor) -> None:
    if not (x.is_cuda or _interpreting()):
        raise ValueError(f"the triton kernels need CUDA tensors (or TRITON_INTERPRET=1), got a tensor on {x.device}")


def _h_last(x: Tensor) -> Tensor:
    """The kernels index (B, T, H) by strides on B and T but need H contiguous."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _launch_params(T: int) -> dict[str, int]:
    # Short sequences: no point in a tile longer than T (>= 16 keeps tiles a sane shape).
    block_t = max(16, min(CONFIG["block_t"], triton.next_power_of_2(T)))
    return dict(BLOCK_T=block_t, BLOCK_H=CONFIG["block_h"], NUM_STAGES=CONFIG["num_stages"],
                num_warps=CONFIG["num_warps"])


def _out_dtype(cell: str, xs: list[Tensor]) -> torch.dtype:
    """linear: b's dtype (as `functional.linear_scan`); cells: the inputs' promoted dtype."""
    if cell == "linear":
        return xs[1].dtype
    dtype = xs[0].dtype
    for x in xs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def _strides(x: Optional[Tensor]) -> tuple[int, int]:
    return (x.stride(0), x.stride(1)) if x is not None else (0, 0)


@torch.library.custom_op("minrnn::triton_scan_fwd", mutates_args=())
def _scan_fwd(
    x1: Tensor, x2: Tensor, x3: Optional[Tensor], h0: Optional[Tensor], mask: Optional[Tensor],
    cell: str, activation: str,
) -> Tensor:
    xs = [_h_last(x) for x in (x1, x2, x3) if x is not None]
    B, T, H = xs[0].shape
    out = torch.empty(B, T, H, device=xs[0].device, dtype=_out_dtype(cell, xs))
    x1, x2 = xs[0], xs[1]
    x3 = xs[2] if len(xs) == 3 else None
    h0 = h0.contiguous() if h0 is not None else None
    mask_u8 = mask.view(torch.uint8) if mask is not None else None
    if out.numel() == 0:  # B = 0 or H = 0: nothing to launch
        return out
    grid = (triton.cdiv(H, CONFIG["block_h"]), B)
    _scan_fwd_kernel[grid](
        x1, x2, x3 if x3 is not None else x2, h0 if h0 is not None else out,
        mask_u8 if mask_u8 is not None else out, out,
        T, H,
        *_strides(x1), *_strides(x2), *_strides(x3), *_strides(mask_u8), *_strides(out),
        CELL=_CELLS[cell], ACT=_ACTS[activation], HAS_H0=h0 is not None, HAS_MASK=mask is not None,
        **_launch_params(T),
    )
    return out


@_scan_fwd.register_fake
def _(x1, x2, x3, h0, mask, cell, activation):
    xs = [x for x in (x1, x2, x3) if x is not None]
    return x1.new_empty(x1.shape, dtype=_out_dtype(cell, xs))


@torch.library.custom_op("minrnn::triton_scan_bwd", mutates_args=())
def _scan_bwd(
    grad: Tensor, out: Tensor, x1: Tensor, x2: Optional[Tensor], x3: Optional[Tensor],
    h0: Optional[Tensor], mask: Optional[Tensor], cell: str, activation: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients (x1, x2, x3, h0); the linear scan does not need b (x2), and an input that is
    absent gets an empty tensor."""
    grad = _h_last(grad)
    x1 = _h_last(x1)
    x2 = _h_last(x2) if x2 is not None else None
    x3 = _h_last(x3) if x3 is not None else None
    B, T, H = x1.shape
    g1 = torch.empty(B, T, H, device=x1.device, dtype=x1.dtype)
    g2 = torch.empty(B, T, H, device=x1.device, dtype=x2.dtype if x2 is not None else out.dtype)
    g3 = torch.empty(B, T, H, device=x1.device, dtype=x3.dtype) if x3 is not None else x1.new_empty(0)
    gh0 = torch.empty(B, H, device=x1.device, dtype=torch.float32) if h0 is not None else x1.new_empty(0)
    h0c = h0.contiguous() if h0 is not None else None
    mask_u8 = mask.view(torch.uint8) if mask is not None else None
    if g1.numel() == 0:
        return g1, g2, g3, gh0.to(h0.dtype) if h0 is not None else gh0
    grid = (triton.cdiv(H, CONFIG["block_h"]), B)
    x2k = x2 if x2 is not None else x1  # the linear cell never reads x2 in backward
    _scan_bwd_kernel[grid](
        grad, out, x1, x2k, x3 if x3 is not None else x2k, h0c if h0c is not None else out,
        mask_u8 if mask_u8 is not None else out, g1, g2, g3 if x3 is not None else g2, gh0 if h0 is not None else g1,
        T, H,
        *_strides(grad), *_strides(out), *_strides(x1), *_strides(x2k), *_strides(x3), *_strides(mask_u8),
        CELL=_CELLS[cell], ACT=_ACTS[activation], HAS_H0=h0 is not None, HAS_MASK=mask is not None,
        **_launch_params(T),
    )
    if h0 is not None:
        gh0 = gh0.to(h0.dtype)
    return g1, g2, g3, gh0


@_scan_bwd.register_fake
def _(grad, out, x1, x2, x3, h0, mask, cell, activation):
    g2_dtype = x2.dtype if x2 is not None else out.dtype
    return (
        torch.empty_like(x1, memory_format=torch.contiguous_format),
        x1.new_empty(x1.shape, dtype=g2_dtype),
        x3.new_empty(x3.shape) if x3 is not None else x1.new_empty(0),
        h0.new_empty(h0.shape) if h0 is not None else x1.new_empty(0),
    )


def _setup_context(ctx, inputs, output) -> None:
    x1, x2, x3, h0, mask, cell, activation = inputs
    ctx.cell, ctx.activation = cell, activation
    ctx.has_x3, ctx.has_h0 = x3 is not None, h0 is not None
    # The linear scan's backward needs a and h only; the cells recompute a, b from their inputs.
    ctx.save_for_backward(x1, None if cell == "linear" else x2, x3, h0, mask, output)


def _backward(ctx, grad: Tensor):
    x1, x2, x3, h0, mask, out = ctx.saved_tensors
    g1, g2, g3, gh0 = _scan_bwd(grad, out, x1, x2, x3, h0, mask, ctx.cell, ctx.activation)
    return g1, g2, g3 if ctx.has_x3 else None, gh0 if ctx.has_h0 else None, None, None, None


_scan_fwd.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- public ops


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """h_t = a_t h_{t-1} + b_t. a, b: (B, T, H); h0: (B, H) or None -> h (B, T, H), b's dtype."""
    _check_device(b)
    return _scan_fwd(a, b, None, h0, None, "linear", "identity")


def min_gru(
    gate: Tensor, cand: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, activation: str = "g"
) -> Tensor:
    """Fused minGRU: gate, cand (B, T, H) pre-activations; h0 (B, H); mask (B, T) bool -> h (B, T, H)."""
    _check_device(gate)
    return _scan_fwd(gate, cand, None, h0, mask, "gru", activation)


def min_lstm(
    forget: Tensor,
    input: Tensor,
    cand: Tensor,
    h0: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    activation: str = "g",
) -> Tensor:
    """Fused minLSTM: forget, input, cand (B, T, H); h0 (B, H); mask (B, T) bool -> h (B, T, H)."""
    _check_device(forget)
    return _scan_fwd(forget, input, cand, h0, mask, "lstm", activation)


def linear_scan_loop_forward(a: Tensor, b: Tensor, block_h: int = 128, num_warps: int = 4) -> Tensor:
    """Forward only, h0 = 0, with the step-by-step loop kernel: the benchmark's comparison point."""
    _check_device(b)
    a, b = _h_last(a), _h_last(b)
    B, T, H = b.shape
    out = torch.empty(B, T, H, device=b.device, dtype=b.dtype)
    _scan_fwd_loop_kernel[(triton.cdiv(H, block_h), B)](
        a, b, out, T, H, *_strides(a), *_strides(b), *_strides(out), BLOCK_H=block_h, num_warps=num_warps
    )
    return out
