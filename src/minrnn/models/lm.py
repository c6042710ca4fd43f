"""Language model: token embedding -> MinRNNBlocks -> norm -> head."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from minrnn._serialization import allow_weights_only
from minrnn.layers.block import CELLS, BlockState, MinRNNBlock, make_norm
from minrnn.generation import GenerationMixin
from minrnn.models.checks import check_ids, check_ranges
from minrnn.models.hub import PretrainedMixin
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


class MinRNNLM(GenerationMixin, PretrainedMixin, nn.Module):
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

    def _check_state(self, state: list[BlockState] | None) -> None:
        """A state must be what `forward` / `step` / `init_state` return: one (conv, rnn) pair per
        block (the blocks check the shapes)."""
        if state is None:
            return
        n = len(self.blocks)
        if not isinstance(state, (list, tuple)) or len(state) != n:
            got = f"{type(state).__name__} of length {len(state)}" if isinstance(state, (list, tuple)) else type(state).__name__
            raise ValueError(f"state must be a list of {n} per-block states (one per layer), as forward, step or "
                             f"init_state return it; got a {got}")

    def forward(
        self, idx: Tensor, state: list[BlockState] | None = None
    ) -> tuple[Tensor, list[BlockState]]:
        """idx (B, T) int64, state from an earlier chunk or None -> (logits (B, T, V), state)."""
        check_ids(idx, self.config.vocab_size)
        self._check_state(state)
        x = self.drop(self.embed(idx))
        new_state = []
        for i, block in enumerate(self.blocks):
            x, s = block(x, None if state is None else state[i])
            new_state.append(s)
        return self.head(self.norm(x)), new_state

    def step(self, idx: Tensor, state: list[BlockState] | None = None) -> tuple[Tensor, list[BlockState]]:
        """idx (B,) -> (logits (B, V), state): one token, O(1) in the context length."""
        check_ids(idx, self.config.vocab_size, step=True)
        self._check_state(state)
        if state is None:
            state = self.init_state(idx.shape[0])
        x = self.drop(self.embed(idx))
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block.step(x, s)
            new_state.append(s)
        return self.head(self.norm(x)), new_state


# torch.load(path, weights_only=True) of a whole saved MinRNNLM: the model, its config and the
# torch.nn modules it holds directly (its blocks register theirs in minrnn.layers).
allow_weights_only(MinRNNLM, LMConfig, nn.Embedding, nn.Dropout, nn.ModuleList, nn.Linear)
