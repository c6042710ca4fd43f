"""What a task gives the trainer, the run config of a training run, and one training run of a task
(shared by `minrnn train` and the ablations).

A run is described by one JSON-able dict, saved as ``config.json`` and inside every checkpoint:

    {"task", "preset", "kind", "arch", "model", "train", "task_config"}

``kind`` is what the user asked for (mingru, minlstm, transformer, gru, lstm, ...: see
`minrnn.models.registry`); ``arch`` and ``model`` rebuild the network with
`minrnn.models.build_model`; ``train`` is a TrainConfig and ``task_config`` the task's own
TaskConfig. `fresh_run_config` and `resumed_run_config` make one from a preset and the user's
settings (what `minrnn train` does), `run_config` from configs, `run_task` trains it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch
from torch import Tensor, nn

from minrnn.models import build_model, check_options, model_config
from minrnn.models.registry import model_fields
from minrnn.train.checkpoint import CHECKPOINT, load_checkpoint
from minrnn.train.config import TrainConfig
from minrnn.train.distributed import dist_info, on_main_then_broadcast
from minrnn.train.machine import machine_info
from minrnn.train.trainer import BatchFn, MetricsFn, Trainer, lm_loss


@dataclass
class TaskSetup:
    """The Trainer's inputs for one run, built by a task's ``setup``."""

    get_batch: BatchFn
    loss_fn: Callable[[nn.Module, Tensor, Tensor], Tensor] = lm_loss
    metrics_fn: MetricsFn | None = None
    early_stop: Callable[[dict], bool] | None = None
    extra: dict = field(default_factory=dict)  # stored in the checkpoint (e.g. the tokenizer)
    summary: str = ""  # printed before training, after the parameter count


def run_config(
    task: ModuleType,
    name: str,
    preset: str,
    model_settings: dict[str, Any],
    train_cfg: TrainConfig,
    task_cfg,
    kind: str,
) -> dict:
    """The run config dict (see module docstring) of model ``kind`` built from flat
    ``model_settings`` (e.g. a preset's LMConfig as a dict, with flags applied).

    The task's optional ``prepare(model_settings, train_cfg, task_cfg)`` checks the configs first
    (and may derive settings, e.g. selective copying's context length from its sequence length).
    """
    if kind not in task.MODEL_KINDS:
        raise ValueError(f"task {name} trains {list(task.MODEL_KINDS)}, not {kind!r}")
    if hasattr(task, "prepare"):
        task.prepare(model_settings, train_cfg, task_cfg)
    arch, model = model_config(kind, model_settings, train_cfg.context, model_family(task))
    return {
        "task": name,
        "preset": preset,
        "kind": kind,
        "arch": arch,
        "model": model,
        "train": train_cfg.to_dict(),
        "task_config": task_cfg.to_dict(),
    }


def model_family(task: ModuleType) -> str:
    """Which model a task's ``--model`` kinds mean: ``"lm"`` (default) or ``"decision"`` (offline
    RL), as the task's ``MODEL_FAMILY`` says (see `minrnn.models.registry`)."""
    return getattr(task, "MODEL_FAMILY", "lm")


def _split_settings(task: ModuleType, settings: dict[str, Any]) -> tuple[dict, dict, dict]:
    """User settings (field name -> value) -> (model, training, task) fields; unknown names are an error."""
    train_names = {f.name for f in fields(TrainConfig)}
    task_names = {f.name for f in fields(task.TaskConfig)}
    model_names = set(model_fields())
    parts: tuple[dict, dict, dict] = ({}, {}, {})
    for k, v in settings.items():
        if k in train_names:
            parts[1][k] = v
        elif k in task_names:
            parts[2][k] = v
        elif k in model_names:
            parts[0][k] = v
        else:
            raise ValueError(f"unknown setting {k!r}")
    return parts


def fresh_run_config(task: ModuleType, name: str, preset: str, settings: dict[str, Any], kind: str | None = None) -> dict:
    """The run config of a new run of ``task``: its ``preset``, the model kind's defaults for that
    preset (the task's ``KIND_DEFAULTS[preset][kind]``, e.g. the Transformer's depth), the settings
    the preset takes for the run's task config (the task's optional ``preset_settings(preset,
    task_cfg)``, e.g. offline RL's per-dataset width and learning rate), then the user's
    ``settings`` (field name -> value, for the model, training and task configs).

    ``kind`` defaults to ``settings["cell"]``, then the preset's cell. A model setting that the
    kind does not read is refused, as is a ``cell`` that contradicts ``kind``.
    """
    if preset not in task.PRESETS:
        raise ValueError(f"unknown preset {preset!r} for {name}; choose from {list(task.PRESETS)}")
    model_set, train_set, task_set = _split_settings(task, settings)
    cell = model_set.pop("cell", None)
    if kind is not None and cell is not None and cell != kind:
        raise ValueError(f"--cell {cell} contradicts --model {kind}; give one of them")
    model_cfg, train_cfg, task_cfg = task.configs(preset)
    kind = kind or cell or model_cfg.cell
    check_options(kind, model_set, model_family(task))
    defaults = getattr(task, "KIND_DEFAULTS", {}).get(preset, {}).get(kind, {})
    task_cfg = replace(task_cfg, **task_set)
    tuned = task.preset_settings(preset, task_cfg) if hasattr(task, "preset_settings") else {}
    tuned_model, tuned_train, _ = _split_settings(task, tuned)
    model_settings = {**model_cfg.to_dict(), **defaults, **tuned_model, **model_set}
    return run_config(task, name, preset, model_settings, replace(train_cfg, **{**tuned_train, **train_set}), task_cfg, kind)


def check_new_run_dir(out_dir: str | Path) -> None:
    """Refuse to start a new run where a run already is (continue it with resume instead)."""
    if (Path(out_dir) / CHECKPOINT).exists():
        raise ValueError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")


def resumed_run_config(task: ModuleType, name: str, out_dir: str | Path, settings: dict[str, Any]) -> dict:
    """The run config saved in ``out_dir``'s checkpoint, with the training and task ``settings``
    given now (e.g. more steps); model settings are refused: a resumed run keeps its model."""
    path = Path(out_dir) / CHECKPOINT
    saved = on_main_then_broadcast(lambda: load_checkpoint(path)).get("config")
    if not isinstance(saved, dict) or not {"task", "arch", "model", "train"} <= saved.keys():
        raise ValueError(f"{path} holds no `minrnn train` run config; cannot resume it from the command line")
    if saved["task"] != name:
        raise ValueError(f"{path} is a {saved['task']} run, not {name}")
    model_set, train_set, task_set = _split_settings(task, settings)
    if model_set:
        flags = " ".join("--" + k.replace("_", "-") for k in model_set)
        raise ValueError(f"--resume keeps the saved model; drop {flags}")
    try:
        train_cfg = replace(TrainConfig(**saved["train"]), **train_set)
        task_cfg = replace(task.TaskConfig(**saved.get("task_config", {})), **task_set)
    except TypeError as e:
        raise ValueError(f"{path} has a config this version cannot read: {e}") from e
    return {**saved, "train": train_cfg.to_dict(), "task_config": task_cfg.to_dict()}


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
