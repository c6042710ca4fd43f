"""What a task gives the trainer, and one training run of a task (shared by `minrnn train` and
the ablations).

A run is described by one JSON-able dict, saved as ``config.json`` and inside every checkpoint:

    {"task", "preset", "kind", "arch", "model", "train", "task_config"}

``kind`` is what the user asked for (mingru, minlstm, transformer, gru, lstm); ``arch`` and
``model`` rebuild the network with `minrnn.models.build_model`; ``train`` is a TrainConfig and
``task_config`` the task's own TaskConfig. `run_config` makes one from configs, `run_task` trains it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch
from torch import Tensor, nn

from minrnn.bench.common import machine_info
from minrnn.models import build_model
from minrnn.models.baselines import RNNConfig, TransformerConfig
from minrnn.models.lm import LMConfig
from minrnn.train.config import TrainConfig
from minrnn.train.distributed import dist_info
from minrnn.train.trainer import BatchFn, MetricsFn, Trainer, lm_loss

MODEL_KINDS = ("mingru", "minlstm", "transformer", "gru", "lstm")


@dataclass
class TaskSetup:
    """The Trainer's inputs for one run, built by a task's ``setup``."""

    get_batch: BatchFn
    loss_fn: Callable[[nn.Module, Tensor, Tensor], Tensor] = lm_loss
    metrics_fn: MetricsFn | None = None
    early_stop: Callable[[dict], bool] | None = None
    extra: dict = field(default_factory=dict)  # stored in the checkpoint (e.g. the tokenizer)
    summary: str = ""  # printed before training, after the parameter count


def model_spec(kind: str, model_cfg: LMConfig, context: int, n_heads: int | None = None) -> tuple[str, dict]:
    """(arch, config dict) for `build_model`: the model kind with the width, depth, dropout and
    vocabulary of ``model_cfg`` (the Transformer also needs its heads and context length)."""
    if kind in ("mingru", "minlstm"):
        return "minrnn", replace(model_cfg, cell=kind).to_dict()
    common = dict(vocab_size=model_cfg.vocab_size, d_model=model_cfg.d_model, n_layers=model_cfg.n_layers, dropout=model_cfg.dropout)
    if kind == "transformer":
        heads = n_heads if n_heads is not None else TransformerConfig.n_heads
        return "transformer", TransformerConfig(**common, n_heads=heads, context=context).to_dict()
    if kind in ("gru", "lstm"):
        return "rnn", RNNConfig(**common, cell=kind).to_dict()
    raise ValueError(f"unknown model kind {kind!r}; choose from {list(MODEL_KINDS)}")


def run_config(
    task: ModuleType,
    name: str,
    preset: str,
    model_cfg: LMConfig,
    train_cfg: TrainConfig,
    task_cfg,
    kind: str | None = None,
    n_heads: int | None = None,
) -> dict:
    """The run config dict (see module docstring); ``kind`` defaults to ``model_cfg.cell``.

    The task's optional ``prepare(model_cfg, train_cfg, task_cfg)`` checks the configs first (and
    may derive settings, e.g. selective copying's context length from its sequence length).
    """
    kind = kind or model_cfg.cell
    if hasattr(task, "prepare"):
        task.prepare(model_cfg, train_cfg, task_cfg)
    if kind not in task.MODEL_KINDS:
        raise ValueError(f"task {name} trains {list(task.MODEL_KINDS)}, not {kind!r}")
    arch, model = model_spec(kind, model_cfg, train_cfg.context, n_heads)
    return {
        "task": name,
        "preset": preset,
        "kind": kind,
        "arch": arch,
        "model": model,
        "train": train_cfg.to_dict(),
        "task_config": task_cfg.to_dict(),
    }


def run_task(task: ModuleType, config: dict, out_dir: str | Path, *, resume: bool = False, reuse: bool = False) -> dict:
    """Train the run ``config`` of ``task`` into ``out_dir`` (config.json, metrics.jsonl, checkpoints,
    and machine.jsonl: what each session, the first and every resume, ran on).

    ``resume=True`` continues from the folder's checkpoint. Under torchrun every process calls
    this; only rank 0 prints and writes. Returns the last training record (step, losses,
    validation metrics, ``early_stop``) with ``best_val_loss`` and what the task's optional
    ``finish(trainer, model_config, train_cfg, task_cfg)`` reports (e.g. a test accuracy) and the
    parameter count; rank 0 also writes it to ``result.json``. With ``reuse=True``, a folder that
    already holds the result of a finished run with the same config is read back, not retrained.
    """
    out = Path(out_dir)
    if reuse and (previous := _finished_result(out, config)) is not None:
        return previous
    train_cfg = TrainConfig(**config["train"])
    task_cfg = task.TaskConfig(**config["task_config"])
    info = dist_info()
    say = print if info.is_main else (lambda *a, **k: None)
    torch.manual_seed(train_cfg.seed)  # the same initial weights in every run and on every rank
    model = build_model(config["arch"], config["model"])
    run = task.setup(config["model"], train_cfg, task_cfg)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    n_params = sum(p.numel() for p in set(model.parameters()))  # a set: tied weights count once
    global_batch = train_cfg.batch_size * train_cfg.grad_accum * info.world_size
    say(f"{config['kind']}: {n_params:,} parameters; {run.summary}; global batch {global_batch} "
        f"({info.world_size} process(es))", flush=True)
    trainer = Trainer(
        model,
        run.get_batch,
        train_cfg,
        out,
        loss_fn=run.loss_fn,
        extra={"config": config, **run.extra},
        metrics_fn=run.metrics_fn,
        early_stop=run.early_stop,
    )
    if resume:
        trainer.resume()
        say(f"resumed {out} at step {trainer.step}")
    if info.is_main:
        session = {"step": trainer.step, "world_size": info.world_size, **machine_info(trainer.device)}
        with (out / "machine.jsonl").open("w" if trainer.step == 0 else "a") as f:
            f.write(json.dumps(session) + "\n")
    result = dict(trainer.fit())
    result["best_val_loss"] = trainer.best_val
    result["best_step"] = trainer.best_step
    result["parameters"] = n_params
    finish = getattr(task, "finish", None)
    if finish is not None:
        result.update(finish(trainer, config["model"], train_cfg, task_cfg))
    if info.is_main:
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _finished_result(out: Path, config: dict) -> dict | None:
    """The saved result of a finished run in ``out`` with exactly this config, else None."""
    try:
        saved = json.loads((out / "config.json").read_text())
        result = json.loads((out / "result.json").read_text())
        # Fields added to TrainConfig since that run take their defaults, as a resumed run's do.
        saved["train"] = TrainConfig(**saved["train"]).to_dict()
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return result if saved == config else None
