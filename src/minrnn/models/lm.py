"""Language model: token embedding -> MinRNNBlocks -> norm -> head."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from minrnn.layers.block import CELLS, BlockState, MinRNNBlock, make_norm
from minrnn.models.checks import check_ranges
from minrnn.ops.activations import ACTIVATIONS


@dataclass
class LMConfig:
    vocab_size: int = 65
    d_model: int = 384
    n_layers: int = 3
    cell: str = "mingru"  # "mingru" or "minlstm"
    expansion: float = 2.0
    conv_kernel: int = 4  # 0: no conv
    mlp_ratio: float = 4.0  # 0: no MLP
    dropout: float = 0.2
    norm: str = "layernorm"
    activation: str = "g"
    tie_weights: bool = False

    def __post_init__(self) -> None:
        check_ranges(
            self,
            positive=("vocab_size", "d_model", "n_layers", "expansion"),
            nonnegative=("conv_kernel", "mlp_ratio"),
            choices={"cell": CELLS, "norm": ("layernorm", "rmsnorm"), "activation": ACTIVATIONS},
        )

    def to_dict(self) -> dict:
        return asdict(self)


class MinRNNLM(nn.Module):
    """Causal language model over (B, T) token ids.

    `forward` runs a whole sequence in parallel mode; `step` runs one token with every layer's
    state (the conv's included), so generation costs O(1) per token.
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            MinRNNBlock(
                config.d_model,
                cell=config.cell,
                expansion=config.expansion,
                conv_kernel=config.conv_kernel,
                mlp_ratio=config.mlp_ratio,
                dropout=config.dropout,
                norm=config.norm,
                activation=config.activation,
            )
            for _ in range(config.n_layers)
        )
        self.norm = make_norm(config.norm, config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.embed.weight

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def init_state(self, batch_size: int) -> list[BlockState]:
        return [block.init_state(batch_size) for block in self.blocks]

    def forward(
        self, idx: Tensor, state: list[BlockState] | None = None
    ) -> tuple[Tensor, list[BlockState]]:
        """idx (B, T) int64, state from an earlier chunk or None -> (logits (B, T, V), state)."""
        if idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"idx must be an integer tensor of shape (B, T), got {idx.dtype} {tuple(idx.shape)}")
        x = self.drop(self.embed(idx))
        new_state = []
        for i, block in enumerate(self.blocks):
            x, s = block(x, None if state is None else state[i])
            new_state.append(s)
        return self.head(self.norm(x)), new_state

    def step(self, idx: Tensor, state: list[BlockState] | None = None) -> tuple[Tensor, list[BlockState]]:
        """idx (B,) -> (logits (B, V), state): one token, O(1) in the context length."""
        if state is None:
            state = self.init_state(idx.shape[0])
        x = self.drop(self.embed(idx))
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block.step(x, s)
            new_state.append(s)
        return self.head(self.norm(x)), new_state
