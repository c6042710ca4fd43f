"""Baseline language models trained by the same Trainer as MinRNNLM: a nanoGPT-style
Transformer and `nn.GRU` / `nn.LSTM` LMs.

All share MinRNNLM's interface: ``forward(idx (B, T), state=None) -> (logits (B, T, V), state)``
and ``step(idx (B,), state) -> (logits (B, V), state)``, so `minrnn.generation.generate` samples
from any of them. The RNNs carry their hidden state; the Transformer's "state" is the token
window itself, recomputed in full at every step (O(context) per token, no KV cache).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from minrnn.generation import GenerationMixin
from minrnn.models.checks import check_ids, check_ranges
from minrnn.models.hub import PretrainedMixin


# --- Transformer ------------------------------------------------------------------------------


@dataclass
class TransformerConfig:
    """nanoGPT's shakespeare_char model by default (the paper's Transformer baseline)."""

    vocab_size: int = 65
    d_model: int = 384
    n_layers: int = 6
    n_heads: int = 6
    context: int = 256  # longest window the position embedding covers
    dropout: float = 0.2
    bias: bool = False

    def __post_init__(self) -> None:
        check_ranges(self, positive=("vocab_size", "d_model", "n_layers", "n_heads", "context"))
        if self.d_model % self.n_heads:
            raise ValueError(f"TransformerConfig.d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model={cfg.d_model} must be a multiple of n_heads={cfg.n_heads}")
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x (B, T, D) -> (B, T, D). Causal; or, with ``attn_mask`` (bool, broadcastable to
        (B, heads, T, T), True where a query may attend to a key), as that mask says."""
        B, T, D = x.shape
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        y = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0, is_causal=attn_mask is None
        )
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, D)))


class TransformerBlock(nn.Module):
    """x = x + Attn(LN(x)); x = x + MLP(LN(x)), MLP: D -> 4D -> D with GELU."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model, bias=cfg.bias),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model, bias=cfg.bias),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x (B, T, D) -> (B, T, D); ``attn_mask`` as `CausalSelfAttention`'s."""
        x = x + self.attn(self.ln1(x), attn_mask)
        return x + self.mlp(self.ln2(x))


def gpt_init_(module: nn.Module, n_layers: int) -> None:
    """nanoGPT's (GPT-2's) init of ``module``'s parameters: matrices N(0, 0.02), the residual
    projections of `TransformerBlock`s N(0, 0.02 / sqrt(2 n_layers)), biases 0."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
            nn.init.normal_(p, 0.0, std)
        elif name.endswith("bias"):
            nn.init.zeros_(p)


class TransformerLM(GenerationMixin, PretrainedMixin, nn.Module):
    """GPT with learned positions and a head tied to the token embedding (as nanoGPT)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.pos = nn.Embedding(config.context, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model, bias=config.bias)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight
        gpt_init_(self, config.n_layers)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """idx (B, T) with T <= context, state (B, S) earlier tokens or None -> (logits (B, T, V),
        state: the last context - 1 tokens). With a state, idx's tokens attend to as many earlier
        tokens as fit in the window."""
        check_ids(idx, self.config.vocab_size)
        T, C = idx.shape[1], self.config.context
        if T > C:
            raise ValueError(f"idx has T={T} tokens, more than the model's context={C}")
        if state is not None:
            if not isinstance(state, Tensor) or state.dim() != 2 or state.shape[0] != idx.shape[0]:
                got = f"{state.dtype} {tuple(state.shape)}" if isinstance(state, Tensor) else type(state).__name__
                raise ValueError(f"state must be the earlier tokens (B, S) = ({idx.shape[0]}, S) that forward or step returned, got {got}")
            check_ids(state, self.config.vocab_size, name="state", min_len=0)
        seq = idx if state is None else torch.cat([state, idx], dim=1)[:, -C:]
        pos = torch.arange(seq.shape[1], device=idx.device)
        x = self.drop(self.embed(seq) + self.pos(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x[:, -T:]))
        return logits, seq[:, -(C - 1) :] if C > 1 else seq[:, :0]

    def step(self, idx: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """idx (B,) -> (logits (B, V), state): recomputes the whole window (O(context))."""
        check_ids(idx, self.config.vocab_size, step=True)
        logits, state = self(idx.unsqueeze(1), state)
        return logits[:, -1], state


# --- nn.GRU / nn.LSTM ---------------------------------------------------------------------------


@dataclass
class RNNConfig:
    vocab_size: int = 65
    d_model: int = 384
    n_layers: int = 3
    cell: str = "gru"  # "gru" (nn.GRU) or "lstm" (nn.LSTM)
    dropout: float = 0.2

    def __post_init__(self) -> None:
        check_ranges(self, positive=("vocab_size", "d_model", "n_layers"), choices={"cell": ("gru", "lstm")})

    def to_dict(self) -> dict:
        return asdict(self)


class RNNLM(GenerationMixin, PretrainedMixin, nn.Module):
    """Embedding -> multi-layer nn.GRU / nn.LSTM (cuDNN / oneDNN kernels) -> LayerNorm -> head."""

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        cells = {"gru": nn.GRU, "lstm": nn.LSTM}
        if config.cell not in cells:
            raise ValueError(f"cell must be one of {list(cells)}, got {config.cell!r}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.rnn = cells[config.cell](
            config.d_model, config.d_model, num_layers=config.n_layers, batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: Tensor, state=None):
        """idx (B, T), state (h for GRU, (h, c) for LSTM; each (n_layers, B, D)) or None ->
        (logits (B, T, V), state after the last step)."""
        check_ids(idx, self.config.vocab_size)
        self._check_state(state, idx.shape[0])
        h, state = self.rnn(self.drop(self.embed(idx)), state)
        return self.head(self.norm(self.drop(h))), state

    def _check_state(self, state, batch_size: int) -> None:
        """nn.GRU's h or nn.LSTM's (h, c), each (n_layers, B, d_model), as forward returns it."""
        if state is None:
            return
        cfg = self.config
        expected = (cfg.n_layers, batch_size, cfg.d_model)
        parts = state if cfg.cell == "lstm" and isinstance(state, (tuple, list)) and len(state) == 2 else (state,)
        form = "the pair (h, c)" if cfg.cell == "lstm" else "a tensor h"
        if (cfg.cell == "lstm") != (len(parts) == 2) or not all(isinstance(t, Tensor) and tuple(t.shape) == expected for t in parts):
            got = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in parts]
            raise ValueError(f"state must be {form} of shape (n_layers, B, d_model) = {expected}, as forward and step return it; got {got}")

    def step(self, idx: Tensor, state=None):
        """idx (B,) -> (logits (B, V), state): O(1) per token."""
        check_ids(idx, self.config.vocab_size, step=True)
        logits, state = self(idx.unsqueeze(1), state)
        return logits[:, -1], state
