"""Language modelling on your own text: ``minrnn train text --data PATH`` (a UTF-8 file or a
folder of them), character-level by default (``--tokenizer byte`` for UTF-8 bytes, vocabulary 256).

The text is encoded once into a memory-mapped token file (`minrnn.data.corpus`); the last
``val_fraction`` of it is held out for validation; the model's ``vocab_size`` is the tokenizer's
(a ``--vocab-size`` that differs is refused) and the tokenizer is stored in the run's checkpoints,
so `minrnn sample` and `minrnn.load` decode with it.

Presets are the Shakespeare task's: ``small`` (default; minutes on a laptop CPU) and ``paper``
(the paper's character-level setup). Tiny Shakespeare itself stays the ``shakespeare`` task, the
one that reproduces the paper's figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from minrnn.data.corpus import load_corpus
from minrnn.data.text import TOKENIZERS, fixed_windows, random_windows
from minrnn.models.lm import LMConfig
from minrnn.tasks import shakespeare
from minrnn.tasks.base import TaskSetup
from minrnn.train.config import TrainConfig


@dataclass
class TaskConfig:
    """Where the text is and how it is tokenized and split."""

    data: str | None = None  # a UTF-8 text file or a folder of them (required)
    tokenizer: str = "char"  # "char" (distinct characters, sorted) or "byte" (UTF-8 bytes)
    val_fraction: float = 0.1  # the last part of the text held out for validation

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {list(TOKENIZERS)}, got {self.tokenizer!r}")
        if not 0.0 < self.val_fraction < 1.0:  # also refuses nan
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, tuple[LMConfig, TrainConfig, TaskConfig]] = {
    name: (model, train, TaskConfig()) for name, (model, train, _) in shakespeare.PRESETS.items()
}
DEFAULT_PRESET = "small"
MODEL_KINDS = shakespeare.MODEL_KINDS
KIND_DEFAULTS = shakespeare.KIND_DEFAULTS


def configs(name: str) -> tuple[LMConfig, TrainConfig, TaskConfig]:
    """Fresh copies of a preset's model, training and task configs."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {list(PRESETS)}")
    return tuple(replace(c) for c in PRESETS[name])  # type: ignore[return-value]


def _corpus(task_cfg: TaskConfig):
    if task_cfg.data is None:
        raise ValueError("minrnn train text needs --data PATH: a UTF-8 text file or a folder of them")
    return load_corpus(task_cfg.data, task_cfg.tokenizer)


def preset_settings(preset: str, task_cfg: TaskConfig) -> dict:
    """The model's vocabulary size is the text's (encodes the text on first use)."""
    return {"vocab_size": _corpus(task_cfg).tokenizer.vocab_size}


def _check(vocab_size: int, context: int, task_cfg: TaskConfig):
    corpus = _corpus(task_cfg)
    tok = corpus.tokenizer
    if vocab_size != tok.vocab_size:
        raise ValueError(f"vocab_size is {vocab_size}, but {task_cfg.data} has {tok.vocab_size} symbols with the "
                         f"{task_cfg.tokenizer} tokenizer (drop --vocab-size: it is taken from the text)")
    train, val = corpus.split(task_cfg.val_fraction)
    for name, part in (("training", train), ("validation", val)):
        if len(part) <= context:
            raise ValueError(f"{task_cfg.data}: the {name} split has {len(part):,} tokens, need more than --context {context}; "
                             f"give more text, a smaller --context or another --val-fraction")
    return corpus, train, val


def prepare(model_settings: dict, train_cfg: TrainConfig, task_cfg: TaskConfig) -> None:
    """Check that the text fits the run: its vocabulary, and both splits longer than the context."""
    _check(model_settings["vocab_size"], train_cfg.context, task_cfg)


def setup(model_config: dict, train_cfg: TrainConfig, task_cfg: TaskConfig) -> TaskSetup:
    """Random windows of the memory-mapped tokens; the tokenizer goes into the checkpoint."""
    corpus, train, val = _check(model_config["vocab_size"], train_cfg.context, task_cfg)

    def get_batch(split, generator):
        return random_windows(train if split == "train" else val, train_cfg.batch_size, train_cfg.context, generator)

    files = f"{len(corpus.files)} file(s)"
    return TaskSetup(
        get_batch=get_batch,
        extra={"tokenizer": corpus.tokenizer.to_dict()},
        summary=f"{files}, {task_cfg.tokenizer} tokenizer ({corpus.tokenizer.vocab_size} symbols), "
        f"{len(train):,} train / {len(val):,} val tokens" + shakespeare.validation_summary(train_cfg),
        val_set=fixed_windows(val, train_cfg.context, train_cfg.val_windows) if train_cfg.validation == "windows" else None,
    )


__all__ = ["MODEL_KINDS", "KIND_DEFAULTS", "PRESETS", "DEFAULT_PRESET", "TaskConfig", "configs", "preset_settings", "prepare", "setup"]
