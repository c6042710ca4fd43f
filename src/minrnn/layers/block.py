"""The paper's residual block: norm -> [causal conv] -> minRNN (expansion + down-projection) -> norm -> [MLP]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
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


@dataclass
class StepWeights:
    """A block's weights as `MinRNNBlock.fused_step` reads them: the matmuls' weights as
    transposed views of the parameters, the rest as numpy views (no copies), so in-place updates
    of the parameters (an optimizer step, ``load_state_dict``) show through. Build with
    `MinRNNBlock.step_weights`; rebuild after the parameters move (``.to``, ``.bfloat16()``)."""

    dim: int
    hidden: int
    n_proj: int
    identity: bool
    kernel_size: int  # 0: no conv
    norm1: tuple[Any, Any, bool, float]  # (weight, bias or None, rms, eps), numpy
    conv: tuple[Any, Any] | None  # (weight (D, K), bias (D,)), numpy
    proj: tuple[Tensor, Tensor | None]  # (W^T (D, n_proj * H), bias)
    down: Tensor | None  # W^T (H, D)
    norm2: tuple[Any, Any, bool, float] | None
    mlp: tuple[Tensor, Tensor, Tensor, Tensor] | None  # (W1^T, b1, W2^T, b2)


def norm_weights(norm: nn.Module) -> tuple[Any, Any, bool, float]:
    """(weight, bias or None, is RMSNorm, eps) of a LayerNorm / RMSNorm for `step_cpu`'s kernels
    (numpy views); RMSNorm's eps=None is torch's finfo(dtype).eps, as its forward uses."""
    from minrnn.ops import step_cpu

    rms = isinstance(norm, nn.RMSNorm)
    eps = norm.eps if norm.eps is not None else torch.finfo(norm.weight.dtype).eps
    bias = None if rms or norm.bias is None else step_cpu.as_array(norm.bias)
    return step_cpu.as_array(norm.weight), bias, rms, float(eps)


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

    # --- fused step (CPU): the elementwise work between the matmuls as numba kernels -----------

    def step_weights(self) -> StepWeights:
        """This block's weights packed for `fused_step` (views, not copies)."""
        from minrnn.ops import step_cpu

        conv = None
        if self.conv is not None:
            bias = self.conv.bias if self.conv.bias is not None else torch.zeros_like(self.conv.weight[:, 0, 0])
            conv = (step_cpu.as_array(self.conv.weight.detach()[:, 0]), step_cpu.as_array(bias))  # (D, K), (D,)
        proj = self.rnn.proj[0]
        mlp = None
        if self.mlp is not None:
            mlp = (self.mlp[0].weight.t(), self.mlp[0].bias, self.mlp[2].weight.t(), self.mlp[2].bias)
        return StepWeights(
            dim=self.norm1.weight.shape[0],
            hidden=self.rnn.hidden_size,
            n_proj=self.rnn.n_proj,
            identity=self.rnn.activation == "identity",
            kernel_size=0 if self.conv is None else self.conv.kernel_size,
            norm1=norm_weights(self.norm1),
            conv=conv,
            proj=(proj.weight.t(), proj.bias),
            down=self.down.weight.t() if isinstance(self.down, nn.Linear) else None,
            norm2=None if self.norm2 is None else norm_weights(self.norm2),
            mlp=mlp,
        )

    def _checked_step_state(self, state: BlockState, batch_size: int) -> tuple[Tensor | None, Tensor]:
        """(conv state, rnn state) of ``state``, or the ValueError that says what is wrong."""
        conv_state, rnn_state = self._split_state(state)
        if rnn_state is None:
            raise ValueError("step needs a state: pass init_state(batch_size) for the first token")
        if self.conv is not None:
            self.conv._check_state(conv_state, batch_size)
        expected = (1, batch_size, self.rnn.hidden_size)
        if not isinstance(rnn_state, Tensor) or tuple(rnn_state.shape) != expected:
            got = tuple(rnn_state.shape) if isinstance(rnn_state, Tensor) else type(rnn_state).__name__
            raise ValueError(f"a block's rnn state must have shape (1, B, hidden) = {expected}, got {got}")
        return conv_state, rnn_state

    def fused_step(self, x, add, state: BlockState, w: StepWeights, ws) -> tuple[Any, BlockState]:
        """One token through the block on CPU with `minrnn.ops.step_cpu` kernels between the
        matmuls; equals `step` (within float rounding). For `MinRNNLM.step`, which keeps the
        residual stream in a numpy array:

        x (B, D) numpy, float32 (float64 for a float64 model): the residual stream, updated in
        place; ``add`` (B, D) numpy or None: the previous block's last branch output, not yet
        added to x (adding it here saves a pass). ``w`` from `step_weights`, ``ws`` a
        `step_cpu.Workspace` for batch size B. Returns (this block's pending branch output, new
        state); the new state is float32 (float64) whatever the weights' dtype (bfloat16
        weights: bfloat16 matmuls, float32 state).
        """
        from minrnn.ops import step_cpu

        B, D, H = x.shape[0], w.dim, w.hidden
        K = w.kernel_size
        # The state as `step` returns it; anything else goes through the checks that name the problem.
        ok = type(state) is tuple and len(state) == 2 and isinstance(state[1], Tensor) and state[1].shape == (1, B, H)
        if ok and K:
            ok = isinstance(state[0], Tensor) and state[0].shape == (B, K - 1, D)
        elif ok:
            ok = state[0] is None
        conv_state, rnn_state = state if ok else self._checked_step_state(state, B)
        act = w.proj[0].dtype  # the matmuls' dtype
        compute = torch.float64 if x.dtype == "float64" else torch.float32
        bufs = ws.for_block(w, B, act, compute)
        conv = None
        if K:
            new_conv, new_conv_t = step_cpu.new_state((B, K - 1, D), compute)
            conv = (w.conv[0], w.conv[1], step_cpu.state_array(conv_state), new_conv)
        nw, nb, rms, eps = w.norm1
        step_cpu.add_norm_conv(x, add, nw, nb, rms, eps, bufs.u, bufs.tmp, conv)
        weight, bias = w.proj
        if bias is None:
            torch.mm(bufs.u_t, weight, out=bufs.pre_t)
        else:
            torch.addmm(bias, bufs.u_t, weight, out=bufs.pre_t)
        h_new, h_new_t = step_cpu.new_state((1, B, H), compute)
        h_row = h_new[0]
        n = w.n_proj * H
        step_cpu.cell(tuple((bufs.pre_flat, n, i * H) for i in range(w.n_proj)), step_cpu.state_array(rnn_state)[0], h_row, bufs.hm, w.identity)
        if w.down is not None:
            torch.mm(bufs.hm_t if bufs.hm is not None else step_cpu.from_array(h_row, compute), w.down, out=bufs.down_t)
            add = bufs.down
        else:
            add = h_row
        if w.mlp is not None:
            nw, nb, rms, eps = w.norm2
            step_cpu.add_norm_conv(x, add, nw, nb, rms, eps, bufs.n2, bufs.tmp)
            w1, b1, w2, b2 = w.mlp
            torch.addmm(b1, bufs.n2_t, w1, out=bufs.mlp_t)
            step_cpu.gelu(bufs.mlp, bufs.gelu, bufs.compute_type)
            torch.addmm(b2, bufs.gelu_t, w2, out=bufs.mlp_out_t)
            add = bufs.mlp_out
        return add, (new_conv_t if K else None, h_new_t)

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
