"""Which model a name means: the one table that the CLI, the tasks and the loaders consult.

Two names are involved:

- a *kind* is what a user asks for (``minrnn train ... --model mingru``): mingru, minlstm,
  transformer, gru, lstm;
- an *arch* is the model class a run folder stores beside the config that rebuilds it
  (``"minrnn"`` with an `LMConfig`); several kinds share one arch (mingru and minlstm are both a
  `MinRNNLM`, gru and lstm both an `RNNLM`).

Model settings reach a kind as one flat dict of fields (a task's preset, then the user's flags).
Every kind reads the common fields (`COMMON_FIELDS`) and its own (`ModelKind.options`); a field
given for a kind that does not read it is refused by `check_options`, so that no flag is silently
dropped. New kinds (e.g. an optional Mamba baseline) join with `register_kind`.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, fields
from typing import Any, Callable, Iterable

from torch import nn

from minrnn.models.baselines import RNNConfig, RNNLM, TransformerConfig, TransformerLM
from minrnn.models.lm import LMConfig, MinRNNLM

# arch name (as saved in a run's config) -> (config dataclass, model class)
ARCHS: dict[str, tuple[type, type[nn.Module]]] = {
    "minrnn": (LMConfig, MinRNNLM),
    "transformer": (TransformerConfig, TransformerLM),
    "rnn": (RNNConfig, RNNLM),
}

# Fields every kind reads from the model settings.
COMMON_FIELDS = ("vocab_size", "d_model", "n_layers", "dropout")


@dataclass(frozen=True)
class ModelKind:
    """One ``--model`` choice: how to build its config from flat model settings.

    ``make_config(settings, context)`` returns the arch's config dataclass; ``settings`` holds the
    common fields, possibly more, and ``context`` is the training context length (the Transformer
    sizes its position embedding from it). ``options`` are the fields beyond `COMMON_FIELDS` that
    this kind reads; ``cell`` (as in ``--cell``) names the kind itself where the kind has cells.
    """

    name: str
    arch: str
    description: str
    make_config: Callable[[dict[str, Any], int], Any]
    options: tuple[str, ...] = ()


_MINRNN_OPTIONS = tuple(f.name for f in fields(LMConfig) if f.name not in COMMON_FIELDS)


def _common(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: settings[k] for k in COMMON_FIELDS if k in settings}


def _minrnn_config(cell: str) -> Callable[[dict[str, Any], int], LMConfig]:
    def make(settings: dict[str, Any], context: int) -> LMConfig:
        return LMConfig(**{k: v for k, v in settings.items() if k in _MINRNN_OPTIONS or k in COMMON_FIELDS} | {"cell": cell})

    return make


def _transformer_config(settings: dict[str, Any], context: int) -> TransformerConfig:
    extra = {k: settings[k] for k in ("n_heads",) if settings.get(k) is not None}
    return TransformerConfig(**_common(settings), context=context, **extra)


def _rnn_config(cell: str) -> Callable[[dict[str, Any], int], RNNConfig]:
    return lambda settings, context: RNNConfig(**_common(settings), cell=cell)


MODEL_KINDS: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind, arch: tuple[type, type[nn.Module]] | None = None) -> None:
    """Add a model kind (and its arch, if new) to the table."""
    if arch is not None:
        ARCHS[kind.arch] = arch
    if kind.arch not in ARCHS:
        raise ValueError(f"model kind {kind.name!r} needs arch {kind.arch!r}, which is not registered")
    MODEL_KINDS[kind.name] = kind


for _cell in ("mingru", "minlstm"):
    register_kind(ModelKind(_cell, "minrnn", f"MinRNNLM of {_cell} blocks (the paper's)", _minrnn_config(_cell), _MINRNN_OPTIONS))
register_kind(ModelKind("transformer", "transformer", "nanoGPT-style Transformer baseline", _transformer_config, ("n_heads",)))
register_kind(ModelKind("gru", "rnn", "nn.GRU language model baseline", _rnn_config("gru")))
register_kind(ModelKind("lstm", "rnn", "nn.LSTM language model baseline", _rnn_config("lstm")))


def get_kind(name: str) -> ModelKind:
    if name not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {name!r}; choose from {list(MODEL_KINDS)}")
    return MODEL_KINDS[name]


def check_options(kind: str, given: Iterable[str]) -> None:
    """Refuse model fields the user set that ``kind`` does not read (named as CLI flags)."""
    spec = get_kind(kind)
    allowed = set(COMMON_FIELDS) | set(spec.options)
    unused = [name for name in given if name not in allowed]
    if unused:
        flags = " ".join("--" + n.replace("_", "-") for n in unused)
        takes = " ".join("--" + n.replace("_", "-") for n in sorted(allowed))
        raise ValueError(f"{flags} does not apply to --model {kind} (its model flags: {takes})")


def model_config(kind: str, settings: dict[str, Any], context: int) -> tuple[str, dict]:
    """(arch, config dict) of model ``kind`` built from flat ``settings`` (fields it does not read
    are ignored here; `check_options` refuses them where a user set them)."""
    spec = get_kind(kind)
    return spec.arch, spec.make_config(settings, context).to_dict()


def model_fields() -> dict[str, Field]:
    """Every model setting some kind reads (name -> the dataclass field declaring it, for its type
    and default): what the CLI offers as model flags."""
    out: dict[str, Field] = {}
    for kind in MODEL_KINDS.values():
        declared = {f.name: f for f in fields(ARCHS[kind.arch][0])}
        for name in (*COMMON_FIELDS, *kind.options):
            if name in declared:
                out.setdefault(name, declared[name])
    return out


def build_model(arch: str, config: dict) -> nn.Module:
    """Rebuild a model from its arch name and config dict (as a run folder stores them)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown model arch {arch!r}; expected one of {list(ARCHS)}")
    cfg_cls, model_cls = ARCHS[arch]
    try:
        cfg = cfg_cls(**config)
    except TypeError as e:
        raise ValueError(f"bad config for arch {arch!r}: {e}") from e
    return model_cls(cfg)


__all__ = ["ARCHS", "COMMON_FIELDS", "MODEL_KINDS", "ModelKind", "register_kind", "get_kind", "check_options", "model_config", "model_fields", "build_model"]
