"""The paper's residual block: norm -> [causal conv] -> minRNN (expansion + down-projection) -> norm -> [MLP]."""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from minrnn._serialization import allow_weights_only
from minrnn.layers.conv import CausalConv1d
from minrnn.layers.rnn import MinGRU, MinLSTM, State

CELLS = {"mingru": MinGRU, "minlstm": MinLSTM}

# Per-block step state: (conv state (B, k - 1, D) or None, rnn state (1, B, expansion * D)).
BlockState = tuple[Optional[Tensor], Tensor]


def _hidden(state: State) -> Tensor:
    """The rnn layer's state as one tensor: MinLSTM returns nn.LSTM's pair, whose c is its h."""
    return state[0] if isinstance(state, tuple) else state


def make_norm(kind: str, dim: int) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(dim)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim)
    raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', got {kind!r}")


class MinRNNBlock(nn.Module):
    """Pre-norm residual block (B, T, D) -> (B, T, D):

        x = x + Dropout(Down(minRNN(Conv(Norm(x)))))      minRNN width = expansion * D
        x = x + Dropout(MLP(Norm(x)))                      MLP: D -> mlp_ratio * D -> D, GELU

    ``conv_kernel=0`` drops the conv, ``mlp_ratio=0`` drops the MLP sub-block, ``expansion=1``
    drops the down-projection.
    """

    def __init__(
        self,
        dim: int,
        cell: str = "mingru",
        expansion: float = 1.0,
        conv_kernel: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        norm: str = "layernorm",
        activation: str = "g",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {list(CELLS)}, got {cell!r}")
        hidden = int(round(expansion * dim))
        if hidden < 1:
            raise ValueError(f"expansion * dim must be >= 1, got expansion={expansion}, dim={dim}")
        self.norm1 = make_norm(norm, dim)
        self.conv = CausalConv1d(dim, conv_kernel) if conv_kernel > 0 else None
        self.rnn = CELLS[cell](dim, hidden, batch_first=True, activation=activation, backend=backend)
        self.down = nn.Linear(hidden, dim, bias=False) if hidden != dim else nn.Identity()
        self.drop = nn.Dropout(dropout)
        if mlp_ratio > 0:
            width = int(round(mlp_ratio * dim))
            self.norm2 = make_norm(norm, dim)
            self.mlp = nn.Sequential(nn.Linear(dim, width), nn.GELU(), nn.Linear(width, dim))
        else:
            self.norm2 = self.mlp = None

    def init_state(self, batch_size: int) -> BlockState:
        conv = self.conv.init_state(batch_size) if self.conv is not None else None
        return conv, _hidden(self.rnn.init_state(batch_size))

    def _split_state(self, state: BlockState | None) -> BlockState | tuple[None, None]:
        """(conv state, rnn state) of a state as `forward` / `step` / `init_state` return it."""
        if state is None:
            return None, None
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"a block's state must be the pair (conv state, rnn state) that forward, step or "
                             f"init_state return, got {type(state).__name__}")
        conv_state, rnn_state = state
        if (conv_state is None) != (self.conv is None):
            raise ValueError(f"a block's conv state must be {'None: the block has no conv' if self.conv is None else 'a tensor (B, kernel_size - 1, D)'}, got {type(conv_state).__name__}")
        return conv_state, rnn_state

    def forward(self, x: Tensor, state: BlockState | None = None) -> tuple[Tensor, BlockState]:
        """x (B, T, D), state from a previous chunk or None -> (y (B, T, D), state after the last step)."""
        conv_state, rnn_state = self._split_state(state)
        h = self.norm1(x)
        if self.conv is not None:
            h, conv_state = self.conv(h, conv_state)
        h, rnn_state = self.rnn(h, rnn_state)
        rnn_state = _hidden(rnn_state)
        x = x + self.drop(self.down(h))
        if self.mlp is not None:
            x = x + self.drop(self.mlp(self.norm2(x)))
        return x, (conv_state, rnn_state)

    def step(self, x: Tensor, state: BlockState) -> tuple[Tensor, BlockState]:
        """x (B, D) -> (y (B, D), new state). Equals `forward` one token at a time."""
        conv_state, rnn_state = self._split_state(state)
        if rnn_state is None:
            raise ValueError("step needs a state: pass init_state(batch_size) for the first token")
        h = self.norm1(x)
        if self.conv is not None:
            h, conv_state = self.conv.step(h, conv_state)
        h, rnn_state = self.rnn.step(h, rnn_state)
        rnn_state = _hidden(rnn_state)
        x = x + self.drop(self.down(h))
        if self.mlp is not None:
            x = x + self.drop(self.mlp(self.norm2(x)))
        return x, (conv_state, rnn_state)


# torch.load(path, weights_only=True) of a whole saved model: the block and the torch.nn modules
# it may hold (see minrnn.layers.rnn).
allow_weights_only(MinRNNBlock, nn.LayerNorm, nn.RMSNorm, nn.Identity, nn.Dropout, nn.Sequential, nn.GELU, nn.Linear)
