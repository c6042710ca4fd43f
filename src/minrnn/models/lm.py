"""Language model: token embedding -> MinRNNBlocks -> norm -> head."""

from __future__ import annotations

import threading
import weakref
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from minrnn import functional
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


# Per model: its packed step weights and per-thread scratch buffers, kept off the module so that
# they are never saved, copied or moved with it.
_STEP_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


class MinRNNLM(GenerationMixin, PretrainedMixin, nn.Module):
    """Causal language model over (B, T) token ids.

    `forward` runs a whole sequence in parallel mode; `step` runs one token with every layer's
    state (the conv's included), so generation costs O(1) per token. On CPU without autograd the
    step runs fused (`MinRNNBlock.fused_step`: numba kernels between the matmuls, the residual
    stream and states in float32 also for bfloat16 weights); elsewhere op by op.
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
        """idx (B,) -> (logits (B, V), state): one token, O(1) in the context length.

        Fused on CPU when no gradient is wanted (under ``torch.no_grad()`` / inference mode, or
        frozen weights) and dropout is off: then the new states are float32 (float64 for a
        float64 model) whatever the weights' dtype."""
        fused = self._fused_step_ok(idx)
        check_ids(idx, self.config.vocab_size, step=True, values=not fused)  # the fused embedding checks them
        self._check_state(state)
        if state is None:
            state = self.init_state(idx.shape[0])
        if fused:
            return self._fused_step(idx, state)
        return self.reference_step(idx, state)

    # The packed weights are views of the parameters: moving or converting the model replaces
    # them, so these two drop the cache (in-place updates need nothing: the views see them).
    def _apply(self, fn, *args, **kwargs):
        _STEP_CACHE.pop(self, None)
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        _STEP_CACHE.pop(self, None)
        return super().load_state_dict(*args, **kwargs)

    def _fused_step_ok(self, idx: Tensor) -> bool:
        w = self.head.weight
        if not isinstance(idx, Tensor) or idx.device.type != "cpu" or w.device.type != "cpu" or w.dtype not in (torch.float32, torch.float64, torch.bfloat16):
            return False
        if self.training and self.config.dropout > 0:
            return False
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return False
        if torch.compiler.is_compiling():
            return False
        return functional.step_kernels() is not None

    def _step_cache(self) -> dict:
        """Packed weights (views of the parameters) and scratch buffers of the fused step."""
        cache = _STEP_CACHE.get(self)
        if cache is None:
            from minrnn.layers.block import norm_weights
            from minrnn.ops import step_cpu

            dtypes = {p.dtype for p in self.parameters()}
            if len(dtypes) != 1:
                raise ValueError(f"the fused step needs all parameters in one dtype, got {sorted(map(str, dtypes))}")
            cache = _STEP_CACHE[self] = {
                "embed": step_cpu.as_array(self.embed.weight),
                "blocks": [block.step_weights() for block in self.blocks],
                "norm": norm_weights(self.norm),
                "head": self.head.weight,
                "workspaces": {},
            }
        return cache

    def _fused_step(self, idx: Tensor, state: list[BlockState]) -> tuple[Tensor, list[BlockState]]:
        from minrnn.ops import step_cpu

        cache = self._step_cache()
        head = cache["head"]
        B, D = idx.shape[0], head.shape[1]
        key = (B, threading.get_ident())  # scratch buffers are per thread: steps may run concurrently
        ws = cache["workspaces"].get(key)
        if ws is None:
            ws = cache["workspaces"][key] = step_cpu.Workspace()
        act = head.dtype
        compute = torch.float64 if act == torch.float64 else torch.float32
        x, _ = ws.get("x", (B, D), compute)
        step_cpu.embed(cache["embed"], idx.numpy(), x)
        add, new_state = None, []
        for block, weights, s in zip(self.blocks, cache["blocks"], state):
            add, s = block.fused_step(x, add, s, weights, ws)
            new_state.append(s)
        tmp, _ = ws.get("tmp", (2, D), compute)
        out, out_t = ws.get("final", (B, D), act)
        nw, nb, rms, eps = cache["norm"]
        step_cpu.add_norm_conv(x, add, nw, nb, rms, eps, out, tmp)
        return nn.functional.linear(out_t, head), new_state

    def reference_step(self, idx: Tensor, state: list[BlockState]) -> tuple[Tensor, list[BlockState]]:
        """`step` op by op in PyTorch (autograd, any device and dtype); states in the model's dtype."""
        x = self.drop(self.embed(idx))
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block.step(x, s)
            new_state.append(s)
        return self.head(self.norm(x)), new_state


# torch.load(path, weights_only=True) of a whole saved MinRNNLM: the model, its config and the
# torch.nn modules it holds directly (its blocks register theirs in minrnn.layers).
allow_weights_only(MinRNNLM, LMConfig, nn.Embedding, nn.Dropout, nn.ModuleList, nn.Linear)
