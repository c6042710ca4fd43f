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

A kind names a model in one of two *families*. ``"lm"``: the language model above. ``"decision"``:
offline RL's `DecisionModel`, which embeds returns, states and actions itself and puts the kind's
*backbone* on top (`ModelKind.backbone`: a stack of the kind's causal blocks over (B, L, D), see
`minrnn.models.backbones`); it reads `BACKBONE_FIELDS` and the kind's ``backbone_options``. A task
says which family its ``--model`` means (``MODEL_FAMILY``, default "lm").
"""

from __future__ import annotations

from dataclasses import Field, dataclass, fields
from typing import Any, Callable, Iterable

from torch import nn

from minrnn.models.backbones import MinRNNBackbone, RNNBackbone, TransformerBackbone
from minrnn.models.baselines import RNNConfig, RNNLM, TransformerConfig, TransformerLM
from minrnn.models.decision import DecisionConfig, DecisionModel
from minrnn.models.lm import LMConfig, MinRNNLM
from minrnn.models.mamba import MambaConfig, MambaLM  # imports mambapy only when a MambaLM is built
from minrnn.models.mamba import missing_dependency as _mamba_missing

# arch name (as saved in a run's config) -> (config dataclass, model class)
ARCHS: dict[str, tuple[type, type[nn.Module]]] = {
    "minrnn": (LMConfig, MinRNNLM),
    "transformer": (TransformerConfig, TransformerLM),
    "rnn": (RNNConfig, RNNLM),
    "decision": (DecisionConfig, DecisionModel),
}

# Fields every kind reads from the model settings.
COMMON_FIELDS = ("vocab_size", "d_model", "n_layers", "dropout")
# Fields every backbone reads (models of the "decision" family), and what such a model adds.
BACKBONE_FIELDS = ("d_model", "n_layers", "dropout")
DECISION_FIELDS = ("state_dim", "act_dim", "max_ep_len")
FAMILIES = ("lm", "decision")


@dataclass(frozen=True)
class ModelKind:
    """One ``--model`` choice: how to build its config from flat model settings.

    ``make_config(settings, context)`` returns the arch's config dataclass; ``settings`` holds the
    common fields, possibly more, and ``context`` is the training context length (the Transformer
    sizes its position embedding from it). ``options`` are the fields beyond `COMMON_FIELDS` that
    this kind reads; ``cell`` (as in ``--cell``) names the kind itself where the kind has cells.

    ``backbone(settings)`` builds the kind's backbone for a decision model from `BACKBONE_FIELDS`
    and ``backbone_options`` (None: the kind has none).

    ``missing()`` says whether the kind's optional dependencies import: None if they do (or it has
    none), else the one-line install hint (what building the model would raise).
    """

    name: str
    arch: str
    description: str
    make_config: Callable[[dict[str, Any], int], Any]
    options: tuple[str, ...] = ()
    backbone: Callable[[dict[str, Any]], nn.Module] | None = None
    backbone_options: tuple[str, ...] = ()
    missing: Callable[[], str | None] = lambda: None


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


def _minrnn_backbone(cell: str) -> Callable[[dict[str, Any]], nn.Module]:
    return lambda s: MinRNNBackbone(s["d_model"], s["n_layers"], cell, s["expansion"], s["mlp_ratio"], s["dropout"])


def _transformer_backbone(s: dict[str, Any]) -> nn.Module:
    return TransformerBackbone(s["d_model"], s["n_layers"], s["n_heads"], s["dropout"])


def _rnn_backbone(cell: str) -> Callable[[dict[str, Any]], nn.Module]:
    return lambda s: RNNBackbone(s["d_model"], s["n_layers"], cell, s["dropout"])


for _cell in ("mingru", "minlstm"):
    register_kind(ModelKind(
        _cell, "minrnn", f"MinRNNLM of {_cell} blocks (the paper's)", _minrnn_config(_cell), _MINRNN_OPTIONS,
        backbone=_minrnn_backbone(_cell), backbone_options=("expansion", "mlp_ratio"),
    ))
register_kind(ModelKind(
    "transformer", "transformer", "nanoGPT-style Transformer baseline", _transformer_config, ("n_heads",),
    backbone=_transformer_backbone, backbone_options=("n_heads",),
))
register_kind(ModelKind("gru", "rnn", "nn.GRU language model baseline", _rnn_config("gru"), backbone=_rnn_backbone("gru")))
register_kind(ModelKind("lstm", "rnn", "nn.LSTM language model baseline", _rnn_config("lstm"), backbone=_rnn_backbone("lstm")))
_MAMBA_OPTIONS = ("d_state", "expand", "d_conv")
register_kind(
    ModelKind(
        "mamba", "mamba", "Mamba baseline on mambapy (pip install 'minrnn[mamba]')",
        lambda settings, context: MambaConfig(**_common(settings), **{k: settings[k] for k in _MAMBA_OPTIONS if k in settings}),
        _MAMBA_OPTIONS,
        missing=_mamba_missing,
    ),
    arch=(MambaConfig, MambaLM),
)


def get_kind(name: str) -> ModelKind:
    if name not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {name!r}; choose from {list(MODEL_KINDS)}")
    return MODEL_KINDS[name]


def missing_dependency(name: str) -> str | None:
    """None when model kind ``name`` can be built here, else how to install what it needs."""
    return get_kind(name).missing()


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"model family must be one of {FAMILIES}, got {family!r}")


def check_options(kind: str, given: Iterable[str], family: str = "lm") -> None:
    """Refuse model fields the user set that ``kind`` does not read in ``family`` (named as CLI flags)."""
    _check_family(family)
    spec = get_kind(kind)
    if family == "decision":
        allowed = set(BACKBONE_FIELDS) | set(spec.backbone_options)
    else:
        allowed = set(COMMON_FIELDS) | set(spec.options)
    unused = [name for name in given if name not in allowed]
    if unused:
        flags = " ".join("--" + n.replace("_", "-") for n in unused)
        takes = " ".join("--" + n.replace("_", "-") for n in sorted(allowed))
        raise ValueError(f"{flags} does not apply to --model {kind} (its model flags: {takes})")


def model_config(kind: str, settings: dict[str, Any], context: int, family: str = "lm") -> tuple[str, dict]:
    """(arch, config dict) of model ``kind`` of ``family`` built from flat ``settings`` (fields it
    does not read are ignored here; `check_options` refuses them where a user set them). A
    decision model's ``context`` is its window in timesteps (K); its settings must hold the
    dataset's ``state_dim`` and ``act_dim``."""
    _check_family(family)
    spec = get_kind(kind)
    if family == "lm":
        return spec.arch, spec.make_config(settings, context).to_dict()
    if spec.backbone is None:
        raise ValueError(f"model kind {kind!r} has no backbone for a decision model")
    missing = [k for k in ("state_dim", "act_dim") if k not in settings]
    if missing:
        raise ValueError(f"a decision model needs {' and '.join(missing)} (the dataset's dimensions) in its settings")
    names = {*DECISION_FIELDS, *BACKBONE_FIELDS, *spec.backbone_options}
    cfg = DecisionConfig(backbone=kind, context=context, **{k: v for k, v in settings.items() if k in names})
    return "decision", cfg.to_dict()


def build_backbone(kind: str, settings: dict[str, Any]) -> nn.Module:
    """The backbone of model ``kind`` (a decision model's trunk) from `BACKBONE_FIELDS` and the
    kind's ``backbone_options`` in ``settings``."""
    spec = get_kind(kind)
    if spec.backbone is None:
        raise ValueError(f"model kind {kind!r} has no backbone for a decision model")
    return spec.backbone(settings)


def model_fields() -> dict[str, Field]:
    """Every model setting some kind reads (name -> the dataclass field declaring it, for its type
    and default): what the CLI offers as model flags."""
    out: dict[str, Field] = {}
    backbone_declared = {f.name: f for f in fields(DecisionConfig)}
    for kind in MODEL_KINDS.values():
        declared = {f.name: f for f in fields(ARCHS[kind.arch][0])}
        for name in (*COMMON_FIELDS, *kind.options):
            if name in declared:
                out.setdefault(name, declared[name])
        for name in (*BACKBONE_FIELDS, *kind.backbone_options):
            out.setdefault(name, backbone_declared[name])
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


__all__ = [
    "ARCHS", "COMMON_FIELDS", "BACKBONE_FIELDS", "FAMILIES", "MODEL_KINDS", "ModelKind", "register_kind", "get_kind",
    "check_options", "missing_dependency", "model_config", "build_backbone", "model_fields", "build_model",
]
