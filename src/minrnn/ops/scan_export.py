"""Linear scan for graph export (`torch.export`, `torch.onnx.export(..., dynamo=True)`).

The other backends cannot be exported with a dynamic sequence length: the fused kernels are opaque
(numba, Triton) and the chunked "torch" scan unrolls Python loops whose trip counts depend on T.
This one is a single ``torch.ops.higher_order.scan`` over time, which ``torch.export`` keeps as one
node for any T and the ONNX exporter turns into an ONNX ``Scan`` op. `minrnn.functional` picks it
by itself while a model is being exported; it is not meant for eager use (it is a Python loop there).
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear_scan_export(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """h_t = a_t * h_{t-1} + b_t. a, b: (B, T, H); h0: (B, H) or None (zeros) -> h (B, T, H), b's dtype,
    accumulated in at least float32 as the other backends do."""
    from torch._higher_order_ops.scan import scan  # torch >= 2.6; imported only while exporting

    out_dtype, compute = b.dtype, torch.promote_types(b.dtype, torch.float32)
    a, b = a.to(compute), b.to(compute)
    init = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(compute)

    def step(h: Tensor, ab: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h = torch.addcmul(ab[1], ab[0], h)
        return h, h.clone()  # scan forbids returning the carry itself as the output

    _, hs = scan(step, init, (a.transpose(0, 1), b.transpose(0, 1)))  # over dim 0: time first
    return hs.transpose(0, 1).to(out_dtype)
