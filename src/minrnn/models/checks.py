"""Range checks shared by the model configs: a bad value is a ValueError naming the field."""

from __future__ import annotations

from typing import Any, Iterable


def check_ranges(
    cfg: Any,
    positive: Iterable[str] = (),
    nonnegative: Iterable[str] = (),
    choices: dict[str, Iterable[str]] | None = None,
) -> None:
    """Raise a ValueError for the first field of ``cfg`` out of its range: ``positive`` fields must
    be > 0, ``nonnegative`` >= 0, ``choices`` one of the listed values; ``dropout``, when present,
    lies in [0, 1)."""
    name = type(cfg).__name__
    for field in positive:
        v = getattr(cfg, field)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{name}.{field} must be > 0, got {v!r}")
    for field in nonnegative:
        v = getattr(cfg, field)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"{name}.{field} must be >= 0, got {v!r}")
    for field, allowed in (choices or {}).items():
        allowed = list(allowed)
        if getattr(cfg, field) not in allowed:
            raise ValueError(f"{name}.{field} must be one of {allowed}, got {getattr(cfg, field)!r}")
    dropout = getattr(cfg, "dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name}.dropout must be in [0, 1), got {dropout!r}")
