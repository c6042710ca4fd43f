"""Selective copying (paper Table 2): copy 16 data tokens scattered among noise, in order.

The model is the paper's: `MinRNNLM` with 3 pre-norm residual minRNN blocks, width 64, expansion 6,
dropout 0.1, no conv and no MLP. It reads the whole sequence (data + noise, then the markers;
layout in `minrnn.data.selective_copy`) and is trained with cross-entropy on its outputs at the
markers only. Accuracy is the fraction of those scored tokens predicted right.

Presets:
- ``paper``: the paper's setup (length 4096, 16 tokens, batch 64, grad clip 1.0, lr 1e-4, at most
  400k steps). The paper says Adam, so weight decay is 0; its official code uses AdamW with lr 3e-4:
  pass ``--lr 3e-4`` for that. Needs a GPU.
- ``cpu``: a scaled-down version that a shared 2-core CPU can run for the whole depth x cell
  ablation: length 64, 4 data tokens, width 32, expansion 2, no dropout, batch 32, lr 5e-3,
  at most 4000 steps (same blocks: no conv, no MLP).

Both keep the learning rate constant (no warm-up, no decay: the paper gives none) and stop early
once the validation accuracy reaches ``stop_accuracy``; the final figure is the accuracy on
``test_batches`` fresh batches from a generator the training never sees.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor, nn

from minrnn.data.selective_copy import selective_copy_batch
from minrnn.models.lm import LMConfig
from minrnn.tasks.base import TaskSetup
from minrnn.train.config import TrainConfig
from minrnn.train.trainer import BatchFn, Trainer


@dataclass
class TaskConfig:
    """Selective copying's own settings (the vocabulary is the model's ``vocab_size``)."""

    length: int = 4096  # positions holding data tokens and noise, before the markers
    n_tokens: int = 16  # data tokens to copy
    stop_accuracy: float = 0.995  # stop once validation accuracy reaches this (> 1: never)
    test_batches: int = 20  # fresh batches for the final test accuracy

    def to_dict(self) -> dict:
        return asdict(self)


def paper_model(cell: str = "mingru", n_layers: int = 3) -> LMConfig:
    """The paper's selective-copying model: width 64, expansion 6, dropout 0.1, no conv, no MLP."""
    return LMConfig(
        vocab_size=16, d_model=64, n_layers=n_layers, cell=cell, expansion=6.0, dropout=0.1, conv_kernel=0, mlp_ratio=0.0
    )


PRESETS: dict[str, tuple[LMConfig, TrainConfig, TaskConfig]] = {
    "paper": (
        paper_model(),
        TrainConfig(
            steps=400_000, batch_size=64, context=4096 + 16, lr=1e-4, weight_decay=0.0, grad_clip=1.0,
            eval_every=1000, eval_iters=10, warmup_steps=0, lr_schedule="constant",
        ),
        TaskConfig(length=4096, n_tokens=16),
    ),
    # Sized for a shared 2-core CPU (measured there: the paper's model at length 256 costs ~1.2
    # CPU-s per step and, at length 64 with 16 tokens, was still at 45% accuracy after 2000 steps).
    # So: shorter sequences, 4 tokens, a narrower model (width 32, expansion 2, no dropout), same
    # block structure (no conv, no MLP) and the same depths.
    "cpu": (
        LMConfig(
            vocab_size=16, d_model=32, n_layers=3, cell="mingru", expansion=2.0, dropout=0.0, conv_kernel=0, mlp_ratio=0.0
        ),
        TrainConfig(
            steps=4000, batch_size=32, context=64 + 4, lr=5e-3, weight_decay=0.0, grad_clip=1.0,
            eval_every=50, eval_iters=4, warmup_steps=0, lr_schedule="constant",
        ),
        TaskConfig(length=64, n_tokens=4),
    ),
}
DEFAULT_PRESET = "cpu"
# mamba: mambapy's Mamba blocks (the optional `mamba` extra) of the preset's width and depth, the
# Mamba paper's state 16, expansion 2 and conv 4 (the paper's Table 2 baseline, S6).
MODEL_KINDS = ("mingru", "minlstm", "mamba")


def configs(name: str) -> tuple[LMConfig, TrainConfig, TaskConfig]:
    """Fresh copies of a preset's model, training and task configs."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {list(PRESETS)}")
    return tuple(replace(c) for c in PRESETS[name])  # type: ignore[return-value]


# ----------------------------------------------------------------------------- loss and metrics


def scored_logits(model: nn.Module, x: Tensor, n_tokens: int) -> Tensor:
    """The model's logits at the markers: x (B, L + K) -> (B, K, V) with K = n_tokens."""
    logits, _ = model(x)
    return logits[:, -n_tokens:]


def copy_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy on the K scored outputs only: x (B, L + K), y (B, K)."""
    logits = scored_logits(model, x, y.shape[1])
    return nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


def copy_metrics(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """``accuracy``: fraction of the K scored tokens predicted right (argmax), over the batch."""
    pred = scored_logits(model, x, y.shape[1]).argmax(-1)
    return {"accuracy": (pred == y).float().mean().item()}


def batch_fn(vocab_size: int, train_cfg: TrainConfig, task_cfg: TaskConfig) -> BatchFn:
    """get_batch(split, generator) for the Trainer; both splits draw fresh sequences."""

    def get_batch(split: str, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return selective_copy_batch(train_cfg.batch_size, task_cfg.length, task_cfg.n_tokens, vocab_size, generator)

    return get_batch


@torch.no_grad()
def test_accuracy(
    model: nn.Module, vocab_size: int, train_cfg: TrainConfig, task_cfg: TaskConfig, device: torch.device | str = "cpu"
) -> float:
    """Accuracy on ``task_cfg.test_batches`` batches from a generator seeded apart from training
    (seed) and validation (seed + 1)."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(train_cfg.seed + 1_000_003)
    get_batch = batch_fn(vocab_size, train_cfg, task_cfg)
    correct = total = 0
    for _ in range(task_cfg.test_batches):
        x, y = (t.to(device) for t in get_batch("test", gen))
        pred = scored_logits(model, x, y.shape[1]).argmax(-1)
        correct += int((pred == y).sum())
        total += y.numel()
    model.train(was_training)
    return correct / total


# ----------------------------------------------------------------------------- a run


def prepare(model_settings: dict, train_cfg: TrainConfig, task_cfg: TaskConfig) -> None:
    """Check the configs of a run, and derive its context length from the task's."""
    vocab_size = model_settings["vocab_size"]
    if vocab_size < 3:
        raise ValueError(f"vocab_size must be >= 3 (marker, data tokens, noise), got {vocab_size}")
    if train_cfg.context != task_cfg.length + task_cfg.n_tokens:
        # context only labels throughput here; keep it truthful
        train_cfg.context = task_cfg.length + task_cfg.n_tokens
    if task_cfg.test_batches < 1:
        raise ValueError(f"test_batches must be >= 1, got {task_cfg.test_batches}")
    if math.isnan(task_cfg.stop_accuracy):
        raise ValueError("stop_accuracy must be a number (> 1: never stop early), got nan")
    # Fail on bad task settings now, not at the first batch.
    selective_copy_batch(1, task_cfg.length, task_cfg.n_tokens, vocab_size)


def setup(model_config: dict, train_cfg: TrainConfig, task_cfg: TaskConfig) -> TaskSetup:
    """Batches, loss, accuracy and early stop for one run."""
    vocab_size = model_config["vocab_size"]
    return TaskSetup(
        get_batch=batch_fn(vocab_size, train_cfg, task_cfg),
        loss_fn=copy_loss,
        metrics_fn=copy_metrics,
        early_stop=lambda record: record["val_accuracy"] >= task_cfg.stop_accuracy,
        summary=f"{model_config.get('n_layers')} layers; length {task_cfg.length} + {task_cfg.n_tokens} markers, vocab {vocab_size}",
    )


def finish(trainer: Trainer, model_config: dict, train_cfg: TrainConfig, task_cfg: TaskConfig) -> dict:
    """After training: the accuracy on fresh test batches."""
    return {"test_accuracy": test_accuracy(trainer.model, model_config["vocab_size"], train_cfg, task_cfg, trainer.device)}
