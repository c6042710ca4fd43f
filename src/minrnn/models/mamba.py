"""Mamba baseline language model on `mambapy` (pure PyTorch; ``pip install 'minrnn[mamba]'``).

`MambaLM` = embedding -> dropout -> mambapy's residual Mamba blocks (RMSNorm -> MambaBlock, plus
the residual) -> dropout -> RMSNorm -> head, with MinRNNLM's interface: ``forward(idx (B, T),
state=None) -> (logits (B, T, V), state)`` and ``step(idx (B,), state) -> (logits (B, V), state)``.
A state is one ``(h, conv)`` pair per block as mambapy's ``step`` keeps it: ``h`` (B, E*D, N) the
SSM state (None before the first token), ``conv`` (B, E*D, d_conv - 1) the last inputs of the
depthwise convolution.

The blocks' parameters, their parallel scan (``mambapy.pscan``) and the recurrent step are
mambapy's own. Only the block's parallel forward is spelled out here (`_mixer_forward`), because
mambapy's neither starts from a state nor returns one, which `forward` needs (reading a prompt
before stepping, chunked reading); tests check it against mambapy's forward and step.

The dropout (embedding and final hidden, as `RNNLM`) is this wrapper's: mambapy's blocks have
none, and the Tiny Shakespeare presets train every kind with the preset's dropout. The weights are
initialised as the official Mamba LM does (embedding N(0, 0.02), each block's out_proj divided by
sqrt(n_layers), the rest as PyTorch / mambapy set it); the head is not tied to the embedding.

mambapy is imported when a `MambaLM` is built, never by ``import minrnn``; without it building
one is an ImportError that says how to install it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minrnn.generation import GenerationMixin
from minrnn.models.checks import check_ids, check_ranges
from minrnn.models.hub import PretrainedMixin

INSTALL_HINT = "--model mamba needs the `mambapy` package: pip install 'minrnn[mamba]' (or pip install mambapy)"

# (h (B, E*D, N) or None, conv inputs (B, E*D, d_conv - 1)) per block
MambaState = list[tuple[Tensor | None, Tensor]]


def _mambapy() -> Any:
    try:
        import mambapy.mamba
        import mambapy.pscan
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return mambapy


def missing_dependency() -> str | None:
    """None when mambapy imports (a `MambaLM` can be built), else the install hint."""
    try:
        _mambapy()
    except ImportError:
        return INSTALL_HINT
    return None


@dataclass
class MambaConfig:
    """A Mamba LM: ``n_layers`` blocks of width ``d_model``, SSM state size ``d_state``, inner width
    ``expand * d_model``, convolution width ``d_conv`` (the Mamba paper's defaults: 16, 2, 4)."""

    vocab_size: int = 65
    d_model: int = 384
    n_layers: int = 6
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dropout: float = 0.2

    def __post_init__(self) -> None:
        check_ranges(self, positive=("vocab_size", "d_model", "n_layers", "d_state", "expand", "d_conv"))

    def to_dict(self) -> dict:
        return asdict(self)


class MambaLM(GenerationMixin, PretrainedMixin, nn.Module):
    """Character / token LM on mambapy's Mamba blocks (see the module docstring)."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        mambapy = _mambapy()
        self.config = config
        inner = mambapy.mamba.MambaConfig(
            d_model=config.d_model, n_layers=config.n_layers, d_state=config.d_state, expand_factor=config.expand, d_conv=config.d_conv
        )
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.mamba = mambapy.mamba.Mamba(inner)
        self.norm = mambapy.mamba.RMSNorm(config.d_model, inner.rms_norm_eps)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self._pscan = mambapy.pscan.pscan
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            for layer in self.mamba.layers:  # official Mamba: rescale the residual branch's output
                layer.mixer.out_proj.weight /= math.sqrt(config.n_layers)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_state(self, state: MambaState | None, batch_size: int) -> None:
        if state is None:
            return
        inner = self.mamba.config
        conv_shape = (batch_size, inner.d_inner, inner.d_conv - 1)
        h_shape = (batch_size, inner.d_inner, inner.d_state)
        ok = isinstance(state, (list, tuple)) and len(state) == self.config.n_layers and all(
            isinstance(s, (list, tuple)) and len(s) == 2 and (s[0] is None or (isinstance(s[0], Tensor) and tuple(s[0].shape) == h_shape))
            and isinstance(s[1], Tensor) and tuple(s[1].shape) == conv_shape
            for s in state
        )
        if not ok:
            raise ValueError(f"state must be a list of {self.config.n_layers} (h {h_shape} or None, conv {conv_shape}) pairs, "
                             f"one per block, as forward and step return it")

    def init_state(self, batch_size: int) -> MambaState:
        """The state before the first token (mambapy's: no SSM state yet, zero conv inputs)."""
        inner = self.mamba.config
        conv = torch.zeros(batch_size, inner.d_inner, inner.d_conv - 1, device=self.head.weight.device, dtype=self.head.weight.dtype)
        return [(None, conv.clone()) for _ in range(self.config.n_layers)]

    def forward(self, idx: Tensor, state: MambaState | None = None) -> tuple[Tensor, MambaState]:
        """idx (B, T), state from an earlier call or None -> (logits (B, T, V), state after the
        last token). Parallel over T (mambapy's pscan)."""
        check_ids(idx, self.config.vocab_size)
        self._check_state(state, idx.shape[0])
        x = self.drop(self.embed(idx))
        new_state = []
        for i, layer in enumerate(self.mamba.layers):
            y, s = self._mixer_forward(layer.mixer, layer.norm(x), None if state is None else state[i])
            x = x + y
            new_state.append(s)
        return self.head(self.norm(self.drop(x))), new_state

    def step(self, idx: Tensor, state: MambaState | None = None) -> tuple[Tensor, MambaState]:
        """idx (B,) -> (logits (B, V), state): one token through mambapy's own recurrent step
        (`mambapy.mamba.Mamba.step`), O(1) in the context length."""
        check_ids(idx, self.config.vocab_size, step=True)
        self._check_state(state, idx.shape[0])
        if state is None:
            state = self.init_state(idx.shape[0])
        x, new_state = self.mamba.step(self.drop(self.embed(idx)), list(state))
        return self.head(self.norm(self.drop(x))), new_state

    def _mixer_forward(self, m: nn.Module, x: Tensor, cache: tuple[Tensor | None, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """mambapy's ``MambaBlock.forward`` (x (B, L, D) -> (B, L, D)) from the state ``cache``
        (None: from the start), also returning the state after the last position. Same operations
        in the same order; the convolution reads the cached inputs instead of zero padding, and
        the SSM state h0 enters the scan as A_1 h0 added to the first input."""
        cfg = m.config
        L = x.shape[1]
        xi, z = m.in_proj(x).chunk(2, dim=-1)  # (B, L, ED) each
        xt = xi.transpose(1, 2)  # (B, ED, L)
        prev = xt.new_zeros(xt.shape[0], cfg.d_inner, cfg.d_conv - 1) if cache is None else cache[1]
        conv_in = torch.cat([prev, xt], dim=2)  # (B, ED, d_conv - 1 + L)
        u = F.silu(F.conv1d(conv_in, m.conv1d.weight, m.conv1d.bias, groups=cfg.d_inner).transpose(1, 2))  # (B, L, ED)

        A = -torch.exp(m.A_log.float())  # (ED, N)
        delta, B, C = torch.split(m.x_proj(u), [cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
        delta, B, C = m._apply_layernorms(delta, B, C)
        delta = F.softplus((m.dt_proj.weight @ delta.transpose(1, 2)).transpose(1, 2) + m.dt_proj.bias)  # (B, L, ED)
        deltaA = torch.exp(delta.unsqueeze(-1) * A)  # (B, L, ED, N)
        BX = delta.unsqueeze(-1) * B.unsqueeze(2) * u.unsqueeze(-1)  # (B, L, ED, N)
        h0 = None if cache is None else cache[0]
        if h0 is not None:
            BX = torch.cat([BX[:, :1] + deltaA[:, :1] * h0.unsqueeze(1), BX[:, 1:]], dim=1)
        hs = self._pscan(deltaA, BX)  # (B, L, ED, N)
        y = (hs @ C.unsqueeze(-1)).squeeze(3) + m.D.float() * u  # (B, L, ED)
        out = m.out_proj(y * F.silu(z))
        return out, (hs[:, L - 1], conv_in[:, :, conv_in.shape[2] - (cfg.d_conv - 1) :])
