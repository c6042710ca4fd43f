"""Checks shared by the models: config fields (a bad value is a ValueError naming the field) and
the token ids a language model is given."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

import torch
from torch import Tensor

# A field declared ``int`` takes an int, ``float`` an int or a float, ... (bool is not an int here).
_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_ranges(
    cfg: Any,
    positive: Iterable[str] = (),
    nonnegative: Iterable[str] = (),
    choices: dict[str, Iterable[str]] | None = None,
) -> None:
    """Raise a ValueError for the first field of ``cfg`` of the wrong type (as declared: int, float,
    bool, str) or out of its range: ``positive`` fields must be finite and > 0, ``nonnegative``
    finite and >= 0, ``choices`` one of the listed values; ``dropout``, when present, lies in [0, 1)."""
    name = type(cfg).__name__
    for f in dataclasses.fields(cfg):
        v, allowed_types = getattr(cfg, f.name), _TYPES.get(str(f.type))
        if allowed_types and (not isinstance(v, allowed_types) or (bool not in allowed_types and isinstance(v, bool))):
            raise ValueError(f"{name}.{f.name} must be {'an' if f.type == 'int' else 'a'} {f.type}, got {v!r}")
    for field in positive:
        v = getattr(cfg, field)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{name}.{field} must be > 0, got {v!r}")
    for field in nonnegative:
        v = getattr(cfg, field)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"{name}.{field} must be >= 0, got {v!r}")
    for field, allowed in (choices or {}).items():
        allowed = list(allowed)
        if getattr(cfg, field) not in allowed:
            raise ValueError(f"{name}.{field} must be one of {allowed}, got {getattr(cfg, field)!r}")
    dropout = getattr(cfg, "dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name}.dropout must be in [0, 1), got {dropout!r}")


def check_ids(idx: Tensor, vocab_size: int, *, step: bool = False, name: str = "idx", min_len: int = 1, values: bool = True) -> None:
    """Refuse token ids a language model cannot read: not an integer tensor of shape (B, T) with
    T >= ``min_len`` (``step``: (B,)), or (``values``) ids outside [0, vocab_size); a caller that
    checks the values itself on the way (the fused step's embedding kernel) passes False."""
    shape = "(B,)" if step else "(B, T)"
    if not isinstance(idx, Tensor) or idx.dtype not in (torch.int64, torch.int32) or idx.dim() != (1 if step else 2):
        got = f"{idx.dtype} {tuple(idx.shape)}" if isinstance(idx, Tensor) else type(idx).__name__
        raise ValueError(f"{name} must be an int64 (or int32) tensor of shape {shape}, got {got}")
    if not step and idx.shape[1] < min_len:
        raise ValueError(f"{name} has T = {idx.shape[1]} tokens; expected shape (B, T) with T >= {min_len}")
    if values and idx.numel() and not torch.compiler.is_compiling():  # data-dependent: eager mode only
        lo, hi = torch.aminmax(idx)
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"{name} holds token ids outside [0, vocab_size={vocab_size}): min {int(lo)}, max {int(hi)}")
