"""Sequence backbones: a stack of causal blocks over embeddings, (B, L, D) -> (B, L, D).

A model that embeds its own inputs (the decision model of offline RL) puts one of these on top.
Each backbone has ``forward(x, mask=None)``, where ``mask`` (B, L) marks real positions (1) and
padding (0), and the recurrent ones have ``init_state(batch_size)`` and ``step(x (B, D), state)``
that give ``forward``'s outputs one position at a time with O(1) state.

- `MinRNNBackbone`: the paper's blocks for RL, minRNN -> MLP (`MinRNNBlock` without the conv),
  then a final norm. Padding is input like any other position (Decision Mamba passes no mask).
- `RNNBackbone`: multi-layer ``nn.GRU`` / ``nn.LSTM``, then a final norm; padding is input too.
- `TransformerBackbone`: the project's pre-norm GPT blocks without a position embedding (Decision
  Transformer's GPT-2 has none: its timestep embedding is added to every token), causal attention
  that ignores padded keys (DT's attention mask), then a final norm.

Which kind name means which backbone is decided in `minrnn.models.registry`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from minrnn.layers.block import MinRNNBlock
from minrnn.models.baselines import TransformerBlock, TransformerConfig, gpt_init_, run_rnn


class MinRNNBackbone(nn.Module):
    """``n_layers`` x MinRNNBlock(cell, expansion, conv_kernel=0, mlp_ratio, dropout) -> LayerNorm."""

    def __init__(self, d_model: int, n_layers: int, cell: str = "mingru", expansion: float = 2.0, mlp_ratio: float = 4.0, dropout: float = 0.1) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            MinRNNBlock(d_model, cell=cell, expansion=expansion, conv_kernel=0, mlp_ratio=mlp_ratio, dropout=dropout) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, L, D) -> (B, L, D); ``mask`` is not used (padding is input)."""
        for block in self.blocks:
            x, _ = block(x)
        return self.norm(x)

    def init_state(self, batch_size: int) -> list[Any]:
        return [block.init_state(batch_size) for block in self.blocks]

    def step(self, x: Tensor, state: list[Any]) -> tuple[Tensor, list[Any]]:
        """x (B, D) -> (y (B, D), state): one position, O(1) in the sequence length."""
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block.step(x, s)
            new_state.append(s)
        return self.norm(x), new_state


class RNNBackbone(nn.Module):
    """nn.GRU / nn.LSTM with ``n_layers`` layers of width d_model -> LayerNorm."""

    def __init__(self, d_model: int, n_layers: int, cell: str = "gru", dropout: float = 0.1) -> None:
        super().__init__()
        cells = {"gru": nn.GRU, "lstm": nn.LSTM}
        if cell not in cells:
            raise ValueError(f"cell must be one of {list(cells)}, got {cell!r}")
        self.rnn = cells[cell](d_model, d_model, num_layers=n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, L, D) -> (B, L, D); ``mask`` is not used (padding is input)."""
        return self.norm(run_rnn(self.rnn, x)[0])

    def init_state(self, batch_size: int) -> None:
        return None  # nn.GRU / nn.LSTM start from zeros

    def step(self, x: Tensor, state) -> tuple[Tensor, Any]:
        """x (B, D) -> (y (B, D), state (h, or (h, c) for LSTM))."""
        y, state = run_rnn(self.rnn, x.unsqueeze(1), state)
        return self.norm(y[:, 0]), state


class TransformerBackbone(nn.Module):
    """``n_layers`` pre-norm GPT blocks (causal attention, MLP 4 x d_model, biases) -> LayerNorm,
    with GPT-2's init; no position embedding."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        cfg = TransformerConfig(d_model=d_model, n_layers=n_layers, n_heads=n_heads, dropout=dropout, bias=True)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        gpt_init_(self, n_layers)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, L, D), mask (B, L) or None -> (B, L, D). A position attends to itself and to the
        earlier positions that are not padding."""
        attn_mask = None
        if mask is not None:
            L = x.shape[1]
            causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
            # Keep the diagonal: a padded position attending to nothing would give NaN.
            keys = mask.bool()[:, None, None, :] | torch.eye(L, dtype=torch.bool, device=x.device)
            attn_mask = causal & keys  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.norm(x)
