"""Let ``torch.load(path, weights_only=True)`` rebuild whole saved minrnn models.

Each module that defines a model class calls `allow_weights_only` with its classes (and config
dataclasses) and the torch.nn modules they hold, at import; so after ``import minrnn`` a saved
``MinGRU`` / ``MinLSTM`` / ``MinRNNLM`` loads with weights_only=True and no safe_globals list.
"""

from __future__ import annotations

import torch

# torch.serialization.safe_globals([...]) removes what it lists on exit, even an entry added before
# it: `with safe_globals([nn.Linear]): ...` in a user's script (pytorch/examples does this) would
# drop our nn.Linear. Entries of the form (class, "module.Name") are different set members, so
# they survive that; torch reads that form from 2.6 on, older ones get the plain class.
_FULL_NAMES = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 6)


def allow_weights_only(*classes: type) -> None:
    """Register ``classes`` with `torch.serialization.add_safe_globals`."""
    torch.serialization.add_safe_globals(
        [(c, f"{c.__module__}.{c.__qualname__}") if _FULL_NAMES else c for c in classes]
    )
