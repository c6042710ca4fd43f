"""Weights of lucidrains' ``minGRU-pytorch`` (https://github.com/lucidrains/minGRU-pytorch,
checked with 0.2.1) in minrnn's modules: `from_lucidrains`.

What maps, exactly (same outputs, up to float rounding of the scans):

- ``minGRU(dim, expansion_factor)`` / ``minLSTM(...)`` -> `LucidrainsLayer`: a `MinGRU` / `MinLSTM`
  (batch_first, no bias) and its output projection. Their one Linear makes (hidden, gate) /
  (hidden, f, i); ours makes (gate, cand) / (forget, input, cand): the rows are reordered.
- ``minLM(num_tokens, dim, depth, ff_mult, expansion, use_lstm, enable_conv=False)`` ->
  `MinRNNLM` with ``norm="rmsnorm"``, ``conv_kernel=0``, ``mlp_ratio=ff_mult``: its block
  ``x + to_out(rnn(RMSNorm(x)))``, then ``x + FF(RMSNorm(x))``, is `MinRNNBlock`'s (the rnn's
  bias, absent there, is zero here).

What does not map (a ValueError says so):

- ``enable_conv=True``: their conv is a residual sub-block of its own (depthwise then pointwise,
  on the un-normalised stream); `MinRNNBlock`'s conv is depthwise only, inside the minRNN branch.
- a layer whose ``expansion_factor`` != 1 rounds to an inner width equal to ``dim``: it keeps an
  output Linear of (dim, dim) where minrnn has none.
- ``minGRU_pytorch.hybrid`` / ``hybridLM`` (minGRU with attention).

Differences that remain: dropout (theirs on the residual stream after each block, ours on each
branch's output: eval mode is the same, training noise differs); minLSTM's parallel mode given a
``prev_hidden`` applies g() to it (their step mode does not): our layers take the state as it is,
as their step mode does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from minrnn.layers import MinGRU, MinLSTM
from minrnn.models.lm import LMConfig, MinRNNLM

_LAYER_KEYS = {"to_hidden_and_gate.weight": "mingru", "to_hidden_and_f_i_gate.weight": "minlstm"}


class LucidrainsLayer(nn.Module):
    """lucidrains' ``minGRU`` / ``minLSTM`` layer as minrnn modules: (B, T, dim) -> (B, T, dim).

    ``rnn`` is a `MinGRU` / `MinLSTM` of hidden size ``int(dim * expansion_factor)``, ``out`` the
    projection back to ``dim`` (Identity where they have none). Their ``prev_hidden`` (B, 1, H) is
    our state ``h`` (1, B, H): ``h = prev_hidden.transpose(0, 1)``.
    """

    def __init__(self, cell: str, dim: int, hidden: int, proj_out: bool) -> None:
        super().__init__()
        cls = MinGRU if cell == "mingru" else MinLSTM
        self.rnn = cls(dim, hidden, batch_first=True, bias=False)
        self.out = nn.Linear(hidden, dim, bias=False) if proj_out else nn.Identity()

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, T, dim), h (1, B, H) or None -> (y (B, T, dim), h_n (1, B, H))."""
        y, h_n = self.rnn(x, h)
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n
        return self.out(y), h_n


def _reorder(weight: Tensor, cell: str) -> Tensor:
    """Rows of their (hidden, gate) / (hidden, f, i) Linear in our (gate, cand) / (forget, input, cand) order."""
    parts = weight.chunk(2 if cell == "mingru" else 3, dim=0)
    return torch.cat([*parts[1:], parts[0]], dim=0)


def _state_dict(obj: Any) -> dict[str, Tensor]:
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds for a foreign file
            raise ValueError(f"{path} is not a torch.save file of a state dict that torch.load(weights_only=True) reads: "
                             f"{str(e).splitlines()[0][:200]}") from None
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]  # {"model": state_dict, ...}, as many training scripts save
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError("expected a minGRU-pytorch module, its state_dict, or the path of a torch.save'd state_dict")
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in obj.items()}  # DDP / torch.compile prefixes


def from_lucidrains(obj: Any, *, dropout: float = 0.0) -> nn.Module:
    """A minrnn model with the weights of a minGRU-pytorch ``minLM`` (-> `MinRNNLM`), ``minGRU`` or
    ``minLSTM`` layer (-> `LucidrainsLayer`): given the module itself, its ``state_dict()``, or the
    path of a file that ``torch.save`` wrote it to. The sizes are read from the weights' shapes;
    ``dropout`` sets the converted LM's (a module's own is used when a module is given). The model
    is returned in eval mode, in the weights' dtype."""
    if isinstance(obj, nn.Module) and hasattr(obj, "layers"):
        drops = [m.p for m in obj.modules() if isinstance(m, nn.Dropout)]
        dropout = drops[0] if drops else 0.0
    sd = _state_dict(obj)
    if "token_emb.weight" in sd:
        return _convert_lm(sd, dropout)
    for key, cell in _LAYER_KEYS.items():
        if key in sd:
            return _convert_layer(sd, key, cell)
    raise ValueError(f"not a minGRU-pytorch minLM, minGRU or minLSTM state dict (keys: {sorted(sd)[:6]})")


def _convert_layer(sd: dict[str, Tensor], key: str, cell: str) -> LucidrainsLayer:
    weight = sd[key]
    n = 2 if cell == "mingru" else 3
    hidden, dim = weight.shape[0] // n, weight.shape[1]
    layer = LucidrainsLayer(cell, dim, hidden, "to_out.weight" in sd).to(weight.dtype)
    state = {"rnn.proj.0.weight": _reorder(weight, cell)}
    if "to_out.weight" in sd:
        state["out.weight"] = sd["to_out.weight"]
    layer.load_state_dict(state)
    return layer.eval()


def _convert_lm(sd: dict[str, Tensor], dropout: float) -> MinRNNLM:
    if any(re.match(r"layers\.\d+\.0\.", k) for k in sd):
        raise ValueError("this minLM was built with enable_conv=True: its conv (a residual depthwise + pointwise sub-block) "
                         "has no counterpart in MinRNNBlock, whose conv is depthwise inside the minRNN branch; not converted")
    vocab, dim = sd["token_emb.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k)))
    cell = "minlstm" if "layers.0.2.to_hidden_and_f_i_gate.weight" in sd else "mingru"
    rnn_key = "to_hidden_and_gate" if cell == "mingru" else "to_hidden_and_f_i_gate"
    hidden = sd[f"layers.0.2.{rnn_key}.weight"].shape[0] // (2 if cell == "mingru" else 3)
    width = sd["layers.0.4.0.weight"].shape[0]
    if hidden == dim and "layers.0.2.to_out.weight" in sd:
        raise ValueError(f"the minLM's inner width rounds to dim={dim} but it has an output projection (to_out); "
                         f"MinRNNBlock has none at expansion 1: not converted")
    cfg = LMConfig(vocab_size=vocab, d_model=dim, n_layers=depth, cell=cell, expansion=hidden / dim, conv_kernel=0,
                   mlp_ratio=width / dim, dropout=dropout, norm="rmsnorm", activation="g", tie_weights=False)
    model = MinRNNLM(cfg).to(sd["token_emb.weight"].dtype)
    state = {"embed.weight": sd["token_emb.weight"], "norm.weight": sd["norm.weight"], "head.weight": sd["to_logits.weight"]}
    for i in range(depth):
        src, dst = f"layers.{i}.", f"blocks.{i}."
        w = sd[f"{src}2.{rnn_key}.weight"]
        state[dst + "rnn.proj.0.weight"] = _reorder(w, cell)
        state[dst + "rnn.proj.0.bias"] = w.new_zeros(w.shape[0])
        if hidden != dim:
            state[dst + "down.weight"] = sd[f"{src}2.to_out.weight"]
        state[dst + "norm1.weight"] = sd[f"{src}1.weight"]
        state[dst + "norm2.weight"] = sd[f"{src}3.weight"]
        for j in (0, 2):
            state[f"{dst}mlp.{j}.weight"] = sd[f"{src}4.{j}.weight"]
            state[f"{dst}mlp.{j}.bias"] = sd[f"{src}4.{j}.bias"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"the minLM's weights do not fit a MinRNNLM ({' '.join(str(e).split())[:300]})") from None
    return model.eval()


def convert_checkpoint(path: str | os.PathLike, out: str | os.PathLike, *, tokenizer: str | None = None) -> MinRNNLM:
    """Convert the minLM checkpoint at ``path`` into the model folder ``out`` (`save_pretrained`);
    ``tokenizer="byte"`` saves a byte tokenizer beside it (their enwik8 models read bytes)."""
    from minrnn.data.text import ByteTokenizer

    if tokenizer not in (None, "byte"):
        raise ValueError(f"tokenizer must be None or 'byte', got {tokenizer!r}")
    model = from_lucidrains(path)
    if not isinstance(model, MinRNNLM):
        raise ValueError(f"{path} holds a single {model.rnn.__class__.__name__} layer, not a minLM: convert it from Python "
                         f"(minrnn.convert.from_lucidrains) and use it as a module")
    if tokenizer == "byte" and model.config.vocab_size != 256:
        raise ValueError(f"a byte tokenizer needs a model of 256 tokens; this minLM has {model.config.vocab_size}")
    model.save_pretrained(out, tokenizer=ByteTokenizer() if tokenizer == "byte" else None)
    return model


__all__ = ["from_lucidrains", "convert_checkpoint", "LucidrainsLayer"]
