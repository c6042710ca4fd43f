"""Character-level Shakespeare language modelling (paper section on language modelling).

Presets: ``paper`` is the paper's setup (3 layers, width 384, expansion 2, Conv4 -> minRNN -> MLP,
dropout 0.2, AdamW lr 1e-3, batch 64, context 256, clip 0.25, 5000 steps, eval every 25); ``small``
trains in a few minutes on a laptop CPU.

The paper does not give the schedule; both presets use nanoGPT's shakespeare_char one (100 warm-up
steps, cosine decay to lr / 10 at the last step, weight decay 0.1, betas (0.9, 0.99)).

Model kinds (``--model``): ``mingru`` / ``minlstm`` (MinRNNLM), and the baselines ``transformer``
(nanoGPT's shakespeare_char GPT in the paper preset: 6 layers, 6 heads, width 384, dropout 0.2, the
paper's Transformer baseline), ``gru`` / ``lstm`` (nn.GRU / nn.LSTM LMs of the preset's width and
depth), ``mamba`` (mambapy's Mamba blocks, the optional ``mamba`` extra: width 384, 6 layers, state
16, expansion 2 in the paper preset: 5.84M parameters, the nearest depth to minGRU's 6.26M; the
paper does not give its Mamba's size). Width and dropout come from the preset and its flags for
every kind, depth too except where `KIND_DEFAULTS` says.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from minrnn.data.shakespeare import TextSplits, load_shakespeare
from minrnn.data.text import fixed_windows, random_windows, tokenizer_from_checkpoint  # noqa: F401 (tokenizer_from_checkpoint: kept here for callers)
from minrnn.models.lm import LMConfig
from minrnn.tasks.base import TaskSetup
from minrnn.train.config import TrainConfig


@dataclass
class TaskConfig:
    """Where the text is: a path to tinyshakespeare.txt (None: $MINRNN_DATA_DIR, cache, download)."""

    data: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, tuple[LMConfig, TrainConfig, TaskConfig]] = {
    "paper": (LMConfig(), TrainConfig(), TaskConfig()),
    "small": (
        LMConfig(d_model=128, n_layers=2, expansion=2.0, dropout=0.0),
        TrainConfig(steps=600, batch_size=32, context=128, lr=3e-3, min_lr=3e-4, warmup_steps=50, eval_every=100, eval_iters=10),
        TaskConfig(),
    ),
}
DEFAULT_PRESET = "small"
# The paper's reported test loss and the step of the best checkpoint (PAPER.md), shown beside ours
# by `minrnn report`.
PAPER = {
    "paper": {
        "mingru": {"val_loss": 1.548, "best_step": 575},
        "minlstm": {"val_loss": 1.555, "best_step": 625},
        "transformer": {"val_loss": 1.547, "best_step": 2000},
        "mamba": {"val_loss": 1.575, "best_step": 400},
    }
}
MODEL_KINDS = ("mingru", "minlstm", "transformer", "gru", "lstm", "mamba")
# Per preset, what a model kind uses instead of the preset's model settings where no flag is given:
# the Transformer baseline's depth and heads (paper: nanoGPT's shakespeare_char model, the paper's
# Transformer baseline), and Mamba's depth (the parameter count nearest to minGRU's: paper preset
# 5.84M against 6.26M, small 0.48M against 0.48M).
KIND_DEFAULTS = {
    "paper": {"transformer": {"n_layers": 6, "n_heads": 6}, "mamba": {"n_layers": 6}},
    "small": {"transformer": {"n_layers": 2, "n_heads": 4}, "mamba": {"n_layers": 4}},
}


def configs(name: str) -> tuple[LMConfig, TrainConfig, TaskConfig]:
    """Fresh copies of a preset's model, training and task configs."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {list(PRESETS)}")
    return tuple(replace(c) for c in PRESETS[name])  # type: ignore[return-value]


def batch_fn(data: TextSplits, train_cfg: TrainConfig):
    """get_batch(split, generator) for the Trainer."""

    def get_batch(split: str, generator: torch.Generator):
        tokens = data.train if split == "train" else data.val
        return random_windows(tokens, train_cfg.batch_size, train_cfg.context, generator)

    return get_batch


def setup(model_config: dict, train_cfg: TrainConfig, task_cfg: TaskConfig) -> TaskSetup:
    """Batches of the corpus for one run; the tokenizer goes into the checkpoint."""
    data = load_shakespeare(task_cfg.data)
    if model_config["vocab_size"] != data.tokenizer.vocab_size:
        raise ValueError(f"vocab_size is {model_config['vocab_size']}, but Tiny Shakespeare has {data.tokenizer.vocab_size} symbols")
    return TaskSetup(
        get_batch=batch_fn(data, train_cfg),
        extra={"tokenizer": data.tokenizer.chars},  # its characters, as runs have always stored it
        summary=f"{len(data.train):,} train / {len(data.val):,} val tokens" + validation_summary(train_cfg),
        val_set=fixed_windows(data.val, train_cfg.context, train_cfg.val_windows) if train_cfg.validation == "windows" else None,
    )


def validation_summary(train_cfg: TrainConfig) -> str:
    """What a validation reads, for the run's first line."""
    if train_cfg.validation == "windows":
        which = f"{train_cfg.val_windows} evenly spaced" if train_cfg.val_windows else "all"
        return f"; validation: {which} non-overlapping val windows of {train_cfg.context}"
    return f"; validation: {train_cfg.eval_iters} random batches"


__all__ = ["MODEL_KINDS", "KIND_DEFAULTS", "PRESETS", "DEFAULT_PRESET", "PAPER", "TaskConfig", "configs", "setup", "batch_fn"]
