"""Reference scans: slow and plain, for tests and as a readable statement of the math.

Every fast path in minrnn is checked against `sequential_scan` run in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sequential_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """h_t = a_t * h_{t-1} + b_t, one step at a time (differentiable through autograd).

    Args:
        a, b: (B, T, H).
        h0: (B, H) initial state, zeros if None.
    Returns:
        h: (B, T, H).
    """
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    out = []
    # unbind, not a[:, t]: indexing in a loop makes backward O(T^2) (a full-size zero grad per index).
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        h = a_t * h + b_t
        out.append(h)
    return torch.stack(out, dim=1)


def heinsen_scan(log_a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """The paper's log-space parallel scan (Heinsen, 2023), extended to values of any sign.

    h_t = exp(A_t) * sum_{s<=t} b_s exp(-A_s), with A_t = cumsum(log a)_t, evaluated with
    logcumsumexp. Negative values are handled by scanning their positive and negative parts
    separately. Kept as the paper's baseline: its float32 error grows with |A_t| (long T), and
    as the `"log"` backend (which passes log(a)) its float32 gradient wrt a is the one wrt log(a)
    divided by a, so its relative error grows as 1 / a near a = 0 (e.g. 12% at a = 1e-3, T = 129).

    Args:
        log_a: (B, T, H) log of the decay (a > 0).
        b: (B, T, H).
        h0: (B, H) initial state, zeros if None.
    """
    if h0 is not None:
        # h0 enters as a step with coefficient 1 before the sequence.
        log_a = torch.cat([torch.zeros_like(log_a[:, :1]), log_a], dim=1)
        b = torch.cat([h0.unsqueeze(1), b], dim=1)
    a_star = torch.cumsum(log_a, dim=1)
    h = _exp_scan(a_star, _signed_log(b, 1)) - _exp_scan(a_star, _signed_log(b, -1))
    return h[:, 1:] if h0 is not None else h


# log(0) stand-in: finite so that gradients stay finite, and so small (real logs are > -104 in
# float32) that its terms add exactly 0.
_LOG_ZERO = -1.0e4


def _signed_log(b: Tensor, sign: int) -> Tensor:
    """log(max(sign * b, 0)) with _LOG_ZERO for 0 and NaN for NaN (a comparison alone would turn a
    NaN into 0); the inner where keeps log's gradient finite."""
    part = sign * b
    positive = part > 0
    log_part = torch.where(positive, torch.log(torch.where(positive, part, torch.ones_like(part))), _LOG_ZERO)
    return torch.where(torch.isnan(part), part, log_part)


def _exp_scan(a_star: Tensor, log_b: Tensor) -> Tensor:
    return torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))
