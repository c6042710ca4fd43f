"""Let ``torch.load(path, weights_only=True)`` rebuild whole saved minrnn models.

Each module that defines a model class calls `allow_weights_only` with its classes (and config
dataclasses) and the torch.nn modules they hold, at import; so after ``import minrnn`` a saved
``MinGRU`` / ``MinLSTM`` / ``MinRNNLM`` loads with weights_only=True and no safe_globals list.
"""

from __future__ import annotations

import inspect

import torch

# torch.serialization.safe_globals([...]) removes what it lists on exit, even an entry added before
# it: `with safe_globals([nn.Linear]): ...` in a user's script (pytorch/examples does this) would
# drop our nn.Linear. Entries of the form (class, "module.Name") are different set members, so
# they survive that. A torch that cannot read that form (its signature says list[Any]) would fail
# every weights_only load on it, so it gets the plain classes.
_FULL_NAMES = "tuple" in str(inspect.signature(torch.serialization.add_safe_globals).parameters["safe_globals"].annotation)


def allow_weights_only(*classes: type) -> None:
    """Register ``classes`` with `torch.serialization.add_safe_globals`."""
    torch.serialization.add_safe_globals(
        [(c, f"{c.__module__}.{c.__qualname__}") if _FULL_NAMES else c for c in classes]
    )
