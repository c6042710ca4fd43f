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
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch
from torch import Tensor, nn

from minrnn.models import build_model, check_options, model_config
from minrnn.models.registry import model_fields
from minrnn.train.checkpoint import CHECKPOINT, load_checkpoint, write_text_atomic
from minrnn.train.config import TrainConfig
from minrnn.train.distributed import dist_info, on_main_then_broadcast
from minrnn.train.lock import LOCK, RunLock
from minrnn.train.machine import machine_info
from minrnn.train.trainer import BatchFn, MetricsFn, Trainer, TrainingDiverged, lm_loss


@dataclass
class TaskSetup:
    """The Trainer's inputs for one run, built by a task's ``setup``."""

    get_batch: BatchFn
    loss_fn: Callable[[nn.Module, Tensor, Tensor], Tensor] = lm_loss
    metrics_fn: MetricsFn | None = None
    early_stop: Callable[[dict], bool] | None = None
    extra: dict = field(default_factory=dict)  # stored in the checkpoint (e.g. the tokenizer)
    # (inputs, targets), each (N, ...): the fixed held-out set of TrainConfig.validation "windows"
    # (None: the task has none; such a run is refused)
    val_set: tuple[Any, Tensor] | None = None
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


# --- run folders --------------------------------------------------------------------------------

RESULT = "result.json"
_RUN_CONFIG_KEYS = {"task", "arch", "model", "train"}


def is_run_config(obj: Any) -> bool:
    return isinstance(obj, dict) and _RUN_CONFIG_KEYS <= obj.keys()


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def read_result(run_dir: str | Path) -> dict | None:
    """The ``result.json`` of a run folder: how the run ended (``stopped``: finished, early_stop or
    diverged), its last step and best validation loss; None if the run has not ended."""
    result = read_json(Path(run_dir) / RESULT)
    return result if isinstance(result, dict) else None


def check_run_dir(out_dir: str | Path) -> None:
    """Refuse an ``out_dir`` that cannot be a run folder: a file, a path under a file, or a folder
    holding files but no run of `minrnn train` (its config.json), so that a user's own
    config.json, metrics.jsonl or result.json are never overwritten."""
    out = Path(out_dir)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            where = "is a file" if p == out else f"lies under {p}, which is a file"
            raise ValueError(f"--out {out} {where}, not a folder; choose another --out")
        if p.is_dir():
            break
    if not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir() if p.name != LOCK)
    if entries and not is_run_config(read_json(out / "config.json")) and not (out / CHECKPOINT).exists():
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ValueError(f"{out} holds files that are not a minrnn run ({shown}); choose a new or empty folder for --out")


def check_new_run_dir(out_dir: str | Path) -> None:
    """Refuse to start a new run where a run already is (continue it with resume instead), or in a
    folder that `check_run_dir` refuses."""
    check_run_dir(out_dir)
    if (Path(out_dir) / CHECKPOINT).exists():
        raise ValueError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")


def _check_resumable(out_dir: str | Path) -> None:
    out = Path(out_dir)
    check_run_dir(out)
    if not (out / CHECKPOINT).exists():
        if is_run_config(read_json(out / "config.json")):
            raise FileNotFoundError(f"{out} has no checkpoint yet: the run stopped before its first one; "
                                    f"start it again without --resume")
        raise FileNotFoundError(f"no checkpoint at {out / CHECKPOINT}: nothing to resume; drop --resume to start a new run")


def resumed_run_config(task: ModuleType, name: str, out_dir: str | Path, settings: dict[str, Any]) -> dict:
    """The run config saved in ``out_dir``'s checkpoint, with the training and task ``settings``
    given now (e.g. more steps); model settings are refused: a resumed run keeps its model."""
    path = Path(out_dir) / CHECKPOINT
    on_main_then_broadcast(lambda: _check_resumable(out_dir))
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

    ``resume=True`` continues from the folder's checkpoint; a run that has ended (finished or
    stopped early) and that ``config`` does not extend (by more ``steps``) is left as it is and its
    result returned. Without it, a folder that already holds a run is refused. With
    ``reuse=True``, a folder that already holds the result of a finished run with the same config
    is read back, not retrained (another run there is replaced). Either way a folder holding files
    that are not a minrnn run is refused, and the folder is locked while the run trains (a second
    process gets a ValueError).

    Under torchrun every process calls this; only rank 0 prints and writes. Returns the last
    training record (step, losses, validation metrics, ``early_stop``) with ``stopped``,
    ``best_val_loss`` and what the task's optional ``finish(trainer, model_config, train_cfg,
    task_cfg)`` reports (e.g. a test accuracy) and the parameter count; rank 0 also writes it to
    ``result.json``. A run whose loss goes NaN/Inf raises `TrainingDiverged` after writing a
    ``result.json`` that says so (``stopped: "diverged"``).
    """
    out = Path(out_dir)
    lock = RunLock(out)

    def claim() -> None:
        check_run_dir(out)  # before creating anything in a folder that is not ours
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        try:  # now that no other process can be writing here
            if resume:
                _check_resumable(out)
            elif not reuse:
                check_new_run_dir(out)
        except BaseException:
            lock.release()
            raise

    on_main_then_broadcast(claim)
    try:
        return _train_run(task, config, out, resume, reuse)
    finally:
        lock.release()


def _train_run(task: ModuleType, config: dict, out: Path, resume: bool, reuse: bool) -> dict:
    if reuse and (previous := _finished_result(out, config)) is not None:
        return previous
    train_cfg = TrainConfig(**config["train"])
    task_cfg = task.TaskConfig(**config["task_config"])
    info = dist_info()
    say = print if info.is_main else (lambda *a, **k: None)
    if resume and (done := on_main_then_broadcast(lambda: _ended_run(out, train_cfg))) is not None:
        say(f"{out} has already ended ({done.get('stopped', 'finished')} at step {done.get('step')}); nothing to do "
            f"(pass more --steps to train it further)")
        return done
    torch.manual_seed(train_cfg.seed)  # the same initial weights in every run and on every rank
    model = build_model(config["arch"], config["model"])
    run = task.setup(config["model"], train_cfg, task_cfg)
    if info.is_main:
        (out / RESULT).unlink(missing_ok=True)  # from here on the run has not ended
        write_text_atomic(out / "config.json", json.dumps(config, indent=2) + "\n")
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
        val_set=run.val_set,
    )
    if resume:
        trainer.resume()
        say(f"resumed {out} at step {trainer.step}")
    if info.is_main:
        session = {"step": trainer.step, "world_size": info.world_size, **machine_info(trainer.device)}
        with (out / "machine.jsonl").open("w" if trainer.step == 0 else "a") as f:
            f.write(json.dumps(session) + "\n")
    best = {"best_val_loss": None, "best_step": None, "parameters": n_params}
    try:
        result = dict(trainer.fit())
    except TrainingDiverged as e:
        if info.is_main:
            nonfinite = {k: str(v) for k, v in e.values.items()}  # "nan" / "inf", as _write_result does
            diverged = {"stopped": "diverged", "step": e.step, "nonfinite": nonfinite, "checkpoint_step": e.checkpoint_step}
            _write_result(out, {**diverged, **best, **_best(trainer)})
        raise
    result["stopped"] = "early_stop" if result.get("early_stop") else "time_budget" if result.get("budget_stop") else "finished"
    result.update({**best, **_best(trainer)})
    finish = getattr(task, "finish", None)
    if finish is not None:
        result.update(finish(trainer, config["model"], train_cfg, task_cfg))
    if info.is_main:
        _write_result(out, result)
    return result


def _best(trainer: Trainer) -> dict:
    if not math.isfinite(trainer.best_val):
        return {}
    return {"best_val_loss": trainer.best_val, "best_step": trainer.best_step}


def _write_result(out: Path, result: dict) -> None:
    # JSON has no NaN / Infinity (Python writes them, other readers refuse them): "nan", "inf".
    result = {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in result.items()}
    write_text_atomic(out / RESULT, json.dumps(result, indent=2) + "\n")


def _ended_run(out: Path, train_cfg: TrainConfig) -> dict | None:
    """The result of the run in ``out`` if it has ended (finished or stopped early; a diverged run
    is retried from its checkpoint) and ``train_cfg`` asks for no more steps than it planned, nor,
    for a run that spent its time budget, more time (or no budget) on the same clock."""
    result = read_result(out)
    config = read_json(out / "config.json")
    if result is None or result.get("stopped") == "diverged" or not is_run_config(config):
        return None
    planned = config["train"].get("steps")
    if not (isinstance(planned, int) and train_cfg.steps <= planned):
        return None
    if result.get("stopped") == "time_budget":
        budget, clock = config["train"].get("time_budget", 0.0), config["train"].get("budget_clock", "wall")
        if train_cfg.time_budget == 0 or train_cfg.time_budget > budget or train_cfg.budget_clock != clock:
            return None
    return result


def _finished_result(out: Path, config: dict) -> dict | None:
    """The saved result of a finished run in ``out`` with exactly this config, else None."""
    try:
        saved = json.loads((out / "config.json").read_text())
        result = json.loads((out / RESULT).read_text())
        # Fields added to TrainConfig since that run take their defaults, as a resumed run's do.
        saved["train"] = TrainConfig(**saved["train"]).to_dict()
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return result if saved == config and result.get("stopped") != "diverged" else None
