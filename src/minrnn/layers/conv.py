"""Causal depthwise 1-D convolution with a streaming state for step mode."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from minrnn._serialization import allow_weights_only


class CausalConv1d(nn.Module):
    """Depthwise conv over time where output t sees inputs t - k + 1 .. t only.

    The step-mode state is the last ``kernel_size - 1`` inputs, (B, kernel_size - 1, D), so
    generation costs O(1) per token.
    """

    def __init__(self, dim: int, kernel_size: int = 4, bias: bool = True) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        self.dim = dim
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(dim, 1, kernel_size))
        self.bias = nn.Parameter(torch.empty(dim)) if bias else None
        bound = 1.0 / math.sqrt(kernel_size)  # fan_in of a depthwise filter
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.dim}, kernel_size={self.kernel_size}"

    def init_state(self, batch_size: int) -> Tensor:
        return self.weight.new_zeros(batch_size, self.kernel_size - 1, self.dim)

    def _check_state(self, state: Tensor, batch_size: int) -> None:
        expected = (batch_size, self.kernel_size - 1, self.dim)
        if not isinstance(state, Tensor) or tuple(state.shape) != expected:
            got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
            raise ValueError(f"conv state must have shape (B, kernel_size - 1, D) = {expected}, got {got}")

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, T, D), state (B, k - 1, D) or None (zeros) -> (y (B, T, D), new state)."""
        if state is None:
            state = self.init_state(x.shape[0]).to(x.dtype)
        else:
            self._check_state(state, x.shape[0])
        xp = torch.cat([state, x], dim=1)  # (B, k - 1 + T, D)
        y = nn.functional.conv1d(xp.transpose(1, 2), self.weight, self.bias, groups=self.dim)
        return y.transpose(1, 2), xp[:, xp.shape[1] - (self.kernel_size - 1) :]

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, D), state (B, k - 1, D) -> (y (B, D), new state)."""
        self._check_state(state, x.shape[0])
        window = torch.cat([state, x.unsqueeze(1)], dim=1)  # (B, k, D)
        y = torch.einsum("bkd,dk->bd", window, self.weight[:, 0])
        if self.bias is not None:
            y = y + self.bias
        return y, window[:, 1:]


# torch.load(path, weights_only=True) of a whole saved model (see minrnn.layers.rnn).
allow_weights_only(CausalConv1d)
