"""Baseline language models trained by the same Trainer as MinRNNLM: a nanoGPT-style
Transformer and `nn.GRU` / `nn.LSTM` LMs.

All share MinRNNLM's interface: ``forward(idx (B, T), state=None) -> (logits (B, T, V), state)``
and ``step(idx (B,), state) -> (logits (B, V), state)``, so `minrnn.generation.generate` samples
from any of them. The RNNs carry their hidden state; the Transformer's state is a `KVCache`: the
window's tokens and each layer's keys and values, so a step computes one new position and attends
to the cached ones (O(1) work per token beyond attention) until the window slides past the
position embedding, after which each step re-encodes the window (learned absolute positions shift).
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

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, D) -> q, k, v, each (B, heads, T, D / heads)."""
        B, T, D = x.shape
        return tuple(t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x (B, T, D) -> (B, T, D). Causal; or, with ``attn_mask`` (bool, broadcastable to
        (B, heads, T, T), True where a query may attend to a key), as that mask says."""
        B, T, D = x.shape
        q, k, v = self._qkv(x)
        y = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0, is_causal=attn_mask is None
        )
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, D)))

    def forward_cached(self, x: Tensor, cache: "_KVStore", layer: int, start: int) -> Tensor:
        """x (B, T, D) at positions start .. start + T - 1 -> (B, T, D), attending causally to the
        ``start`` keys and values cached for ``layer`` and to its own, which it writes there."""
        B, T, D = x.shape
        q, k, v = self._qkv(x)
        keys, values = cache.write(layer, start, k, v)  # (B, heads, start + T, D / heads)
        mask = None
        if T > 1 and start > 0:  # query i sees keys 0 .. start + i (is_causal aligns top-left)
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
        y = nn.functional.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=T > 1 and start == 0
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

    def forward_cached(self, x: Tensor, cache: "_KVStore", layer: int, start: int) -> Tensor:
        """`forward` of positions start .. start + T - 1 with the earlier keys and values cached."""
        x = x + self.attn.forward_cached(self.ln1(x), cache, layer, start)
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


def _put(buf: Tensor | None, start: int, t: Tensor, dim: int) -> Tensor:
    """``buf`` with ``t`` written at positions start .. start + len along ``dim``, growing it
    (capacity doubles, old positions copied) when it is too short. An empty slot takes ``t``
    itself (no copy: a whole window's keys from one forward are kept as computed)."""
    end = start + t.shape[dim]
    if buf is None and start == 0:
        return t
    if buf is None or buf.shape[dim] < end:
        shape = list(t.shape)
        shape[dim] = max(end, 2 * (0 if buf is None else buf.shape[dim]), 16)
        grown = t.new_empty(shape)
        if start:
            grown.narrow(dim, 0, start).copy_(buf.narrow(dim, 0, start))
        buf = grown
    buf.narrow(dim, start, end - start).copy_(t)
    return buf


class _KVStore:
    """Growable buffers of one batch's token ids (B, capacity) and each layer's keys and values
    (B, heads, capacity, D / heads); the first ``filled`` positions hold data. Several `KVCache`s
    share one store, each a prefix of it, so appending a token costs O(1) (amortized)."""

    def __init__(self, n_layers: int) -> None:
        self.tokens: Tensor | None = None
        self.keys: list[Tensor | None] = [None] * n_layers
        self.values: list[Tensor | None] = [None] * n_layers
        self.filled = 0

    def write_tokens(self, start: int, idx: Tensor) -> None:
        self.tokens = _put(self.tokens, start, idx, 1)

    def write(self, layer: int, start: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, heads, T, hd) at positions start .. start + T - 1 of ``layer``; return
        that layer's keys and values for positions 0 .. start + T - 1."""
        end = start + k.shape[2]
        self.keys[layer] = _put(self.keys[layer], start, k, 2)
        self.values[layer] = _put(self.values[layer], start, v, 2)
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def copy(self, length: int) -> "_KVStore":
        """A new store holding copies of this one's first ``length`` positions."""
        new = _KVStore(len(self.keys))
        new.tokens = self.tokens[:, :length].clone()
        new.keys = [t[:, :, :length].clone() for t in self.keys]
        new.values = [t[:, :, :length].clone() for t in self.values]
        new.filled = length
        return new


class KVCache:
    """The Transformer LM's state between calls: the window's last tokens and, while the window
    still starts at position 0 of the position embedding, every layer's keys and values for them.

    ``tokens`` (B, S) are the earlier tokens the next call attends to (at most context - 1). Once
    the window has slid (more tokens read than the context holds), the learned position of every
    cached token changes at each step, so the cache holds the tokens only and each step re-encodes
    the window, exactly as `TransformerLM.forward` would. Stepping twice from one state (e.g. to
    branch) is allowed: the second step copies the shared buffers first.
    """

    def __init__(self, tokens: Tensor, store: _KVStore | None = None) -> None:
        self._tokens = tokens
        self._store = store  # None: tokens only (the window slid, or a state built from tokens)

    @property
    def tokens(self) -> Tensor:
        """(B, S) int64: the tokens in the window."""
        return self._tokens

    @property
    def cached(self) -> bool:
        """Whether keys and values are cached (the next call computes its own positions only)."""
        return self._store is not None

    def __len__(self) -> int:
        return self._tokens.shape[1]

    def __repr__(self) -> str:
        return f"KVCache(batch={self._tokens.shape[0]}, tokens={len(self)}, cached={self.cached})"


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

    def _state_tokens(self, state: Tensor | KVCache | None, batch_size: int) -> Tensor | None:
        """The earlier tokens of ``state``, checked."""
        if state is None:
            return None
        tokens = state.tokens if isinstance(state, KVCache) else state
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.shape[0] != batch_size:
            got = f"{tokens.dtype} {tuple(tokens.shape)}" if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"state must be the KVCache that forward or step returned, or the earlier tokens (B, S) = "
                             f"({batch_size}, S); got {got}")
        check_ids(tokens, self.config.vocab_size, name="state", min_len=0)
        return tokens

    def forward(self, idx: Tensor, state: Tensor | KVCache | None = None) -> tuple[Tensor, KVCache]:
        """idx (B, T) with T <= context, state (the `KVCache` an earlier call returned, the earlier
        tokens (B, S), or None) -> (logits (B, T, V), state: a `KVCache` of the last context - 1
        tokens). idx's tokens attend to as many earlier tokens as fit in the window; with a cache
        that still fits, only idx's positions are computed."""
        check_ids(idx, self.config.vocab_size)
        B, T, C = idx.shape[0], idx.shape[1], self.config.context
        if T > C:
            raise ValueError(f"idx has T={T} tokens, more than the model's context={C}")
        earlier = self._state_tokens(state, B)
        S = 0 if earlier is None else earlier.shape[1]
        if isinstance(state, KVCache) and state.cached and S + T <= C:
            store, start = state._store, S
            if store.filled != S:  # another call appended to the shared buffers: branch off a copy
                store = store.copy(S)
        else:  # encode the whole window from its tokens (positions start at its first token)
            seq = idx if earlier is None else torch.cat([earlier, idx], dim=1)[:, -C:]
            store, start, idx = _KVStore(len(self.blocks)), 0, seq
        end = start + idx.shape[1]
        store.write_tokens(start, idx)
        pos = torch.arange(start, end, device=idx.device)
        x = self.drop(self.embed(idx) + self.pos(pos))
        for i, block in enumerate(self.blocks):
            x = block.forward_cached(x, store, i, start)
        store.filled = end
        logits = self.head(self.norm(x[:, -T:]))
        if end <= C - 1:  # the window did not slide: its keys and values stay valid
            return logits, KVCache(store.tokens[:, :end], store)
        return logits, KVCache(store.tokens[:, end - (C - 1) : end].clone())

    def step(self, idx: Tensor, state: Tensor | KVCache | None = None) -> tuple[Tensor, KVCache]:
        """idx (B,) -> (logits (B, V), state): one new position against the cached keys and
        values (re-encodes the window once it has slid past the context)."""
        check_ids(idx, self.config.vocab_size, step=True)
        logits, state = self(idx.unsqueeze(1), state)
        return logits[:, -1], state


# --- nn.GRU / nn.LSTM ---------------------------------------------------------------------------


def run_rnn(rnn: nn.Module, x: Tensor, state=None):
    """``rnn(x, state)`` for an nn.GRU / nn.LSTM; under CPU autocast it runs in float32: oneDNN
    has no bfloat16 LSTM/GRU primitive on CPUs without AVX512-BF16 ("could not create a
    primitive descriptor"), and the recurrence is the part that wants float32 anyway."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            state = None if state is None else (tuple(t.float() for t in state) if isinstance(state, tuple) else state.float())
            return rnn(x.float(), state)
    return rnn(x, state)


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
        h, state = run_rnn(self.rnn, self.drop(self.embed(idx)), state)
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
