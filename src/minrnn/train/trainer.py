"""The training loop: AdamW with warm-up + cosine decay, gradient clipping and accumulation,
periodic validation with best-checkpoint tracking, exact resume, DDP, metrics and a progress bar.

Determinism: every random draw of a training step (the batch and the dropout masks) comes from
generators seeded by (seed, step, micro-batch index). The data position and the RNG state of a
run are therefore just its step number, which makes resuming exact, and N processes with
``grad_accum=1`` see the same micro-batches as one process with ``grad_accum=N``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from minrnn import functional
from minrnn.layers import set_backend
from minrnn.train.checkpoint import BEST, CHECKPOINT, load_checkpoint, load_weights, save_checkpoint, write_text_atomic
from minrnn.train.config import DTYPES, TrainConfig
from minrnn.train.device import resolve_device
from minrnn.train.distributed import dist_info, on_main_then_broadcast
from minrnn.train.plot import plot_metrics, read_jsonl

# A batch's inputs: a (B, T) tensor, or a dict of (B, T, ...) tensors (offline RL's windows).
Inputs = Tensor | dict[str, Tensor]
# (split, generator) -> (inputs, targets) on the CPU
BatchFn = Callable[[str, torch.Generator], tuple[Inputs, Tensor]]
LossFn = Callable[[nn.Module, Inputs, Tensor], Tensor]
# (model, inputs, targets) -> {"name": value}: extra validation metrics (e.g. accuracy)
MetricsFn = Callable[[nn.Module, Inputs, Tensor], dict[str, float]]

METRICS = "metrics.jsonl"
_MASK64 = (1 << 64) - 1


class TrainingDiverged(RuntimeError):
    """`Trainer.fit` stopped because a step's loss or gradient norm, or a validation loss, was NaN
    or Inf (``TrainConfig.on_nonfinite="stop"``). ``step`` is the step that diverged, ``values``
    the non-finite figures by name, ``checkpoint_step`` the step the run folder's checkpoint holds
    (None if none was saved): resuming continues from there."""

    def __init__(self, step: int, values: dict[str, float], checkpoint_step: int | None) -> None:
        self.step, self.values, self.checkpoint_step = step, values, checkpoint_step
        shown = ", ".join(f"{k} {v}" for k, v in values.items())
        kept = (f"the checkpoint keeps the run as of step {checkpoint_step}" if checkpoint_step is not None
                else "no checkpoint was saved before it")
        super().__init__(f"training diverged at step {step} ({shown}); {kept}")


def lm_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    logits, _ = model(x)
    return nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


def to_device(x: Inputs, device: torch.device) -> Inputs:
    """A batch's inputs (or targets) on ``device``."""
    return {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)


def positions(x: Inputs) -> int:
    """Sequence positions in a batch's inputs, B x T: the tokens of an LM batch, the timesteps of
    an RL batch."""
    first = next(iter(x.values())) if isinstance(x, dict) else x
    return first.shape[0] * first.shape[1] if first.dim() > 1 else first.numel()


def mix_seed(*values: int) -> int:
    """Hash integers into one 63-bit seed (splitmix64), so that neighbouring (step, micro-batch)
    pairs get unrelated random streams."""
    h = 0
    for v in values:
        z = ((h ^ (v & _MASK64)) + 0x9E3779B97F4A7C15) & _MASK64
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _MASK64
        h = z ^ (z >> 31)
    return h >> 1


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups as nanoGPT: weight decay on matrices (and conv filters) only; none on biases,
    norm weights and embeddings."""
    no_decay = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    decay, other, seen = [], [], set()
    for p in model.parameters():
        if id(p) in seen or not p.requires_grad:
            continue  # tied weights appear once
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in no_decay else other).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


class Trainer:
    """Trains ``model`` on batches from ``get_batch`` and writes everything into ``out_dir``:
    ``ckpt.safetensors`` (latest state), ``best.safetensors`` (best validation loss),
    ``metrics.jsonl`` (one record per step), ``loss.png`` and optionally ``tensorboard/``.

    ``extra`` is stored in the checkpoints beside the weights (e.g. the tokenizer and the run
    config, JSON values or tensors) so that a run folder is self-contained.

    ``val_set`` (inputs, targets), each (N, ...), is the task's fixed held-out set that a
    validation reads in one pass when ``config.validation == "windows"`` (in micro-batches of
    ``batch_size``; losses and metrics are means over its N rows, the record says ``val_windows``).

    ``metrics_fn`` adds metrics to each validation (recorded as ``val_<name>`` beside
    ``val_loss``); ``early_stop(record)`` is asked after each validation and ends training when it
    returns True (the record then has ``"early_stop": True``), as does ``config.patience``.
    Under torchrun the model is wrapped in DDP; only rank 0 evaluates, logs and saves.
    """

    def __init__(
        self,
        model: nn.Module,
        get_batch: BatchFn,
        config: TrainConfig,
        out_dir: str | Path,
        loss_fn: LossFn = lm_loss,
        extra: dict | None = None,
        metrics_fn: MetricsFn | None = None,
        early_stop: Callable[[dict], bool] | None = None,
        val_set: tuple[Inputs, Tensor] | None = None,
    ) -> None:
        if config.validation == "windows" and val_set is None:
            raise ValueError("validation 'windows' needs a task with a fixed held-out split (shakespeare, text); "
                             "this one has none: use --validation random")
        self.config = config
        self.val_set = val_set if config.validation == "windows" else None
        self.dist = dist_info()
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        if config.backend is not None:
            functional.get_backend(torch.empty(1, 1, 1, device=self.device), config.backend)  # refuses one that cannot run here
            set_backend(self.model, config.backend)
        # The module the loss sees: DDP averages gradients across processes in backward.
        self.train_model: nn.Module = self.model
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.get_batch = get_batch
        self.loss_fn = loss_fn
        self.metrics_fn = metrics_fn
        self.early_stop = early_stop
        self.extra = extra or {}
        self.out_dir = Path(out_dir)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, config.weight_decay), lr=config.lr, betas=(config.beta1, config.beta2)
        )
        self.step = 0  # optimizer steps done
        self.best_val = math.inf
        self.best_step = 0
        self.elapsed = 0.0  # training wall time, summed over resumed sessions
        self.cpu_time = 0.0  # process CPU time of the training steps, summed likewise
        self.wall = 0.0  # the same with validation and checkpointing included
        self.skipped_steps = 0  # steps not applied because their loss or gradient was NaN/Inf
        self.checkpoint_step: int | None = None  # step of the latest checkpoint on disk

    def _autocast(self) -> contextlib.AbstractContextManager:
        """torch.autocast in the config's dtype (``--dtype bf16``), else nothing."""
        dtype = DTYPES[self.config.dtype]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=getattr(torch, dtype))

    # --- evaluation -----------------------------------------------------------------------------

    def evaluate(self) -> float:
        """Mean validation loss over a fixed set of batches (same seed every time, so evaluations
        compare)."""
        return self.validate()["val_loss"]

    def _val_batches(self):
        """(inputs, targets, weight) of one validation: ``eval_iters`` random batches drawn from a
        fixed seed (weight 1 each), or the fixed ``val_set`` in slices of ``batch_size`` (weight:
        the rows of the slice)."""
        if self.val_set is None:
            gen = torch.Generator().manual_seed(self.config.seed + 1)
            for _ in range(self.config.eval_iters):
                yield (*self.get_batch("val", gen), 1)
            return
        inputs, targets = self.val_set
        n, bs = len(targets), self.config.batch_size
        for i in range(0, n, bs):
            x = {k: v[i : i + bs] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[i : i + bs]
            yield x, targets[i : i + bs], len(targets[i : i + bs])

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """``val_loss`` and ``val_<name>`` for each of ``metrics_fn``'s metrics, averaged over the
        same fixed validation batches as `evaluate` (with a ``val_set``: over its rows, and
        ``val_windows`` says how many)."""
        self.model.eval()
        sums: dict[str, float] = {}
        total = 0
        for x, y, weight in self._val_batches():
            x, y = to_device(x, self.device), to_device(y, self.device)
            with self._autocast():
                values = {"loss": self.loss_fn(self.model, x, y).item()}
                if self.metrics_fn is not None:
                    values.update(self.metrics_fn(self.model, x, y))
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + float(v) * weight
            total += weight
        self.model.train()
        out = {f"val_{k}": v / total for k, v in sums.items()}
        if self.val_set is not None:
            out["val_windows"] = total
        return out

    # --- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything `resume` needs to continue exactly, plus ``extra``."""
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            **self.extra,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # The lr schedule is a function of the step (TrainConfig.lr_at), and so is the data
            # position: batches are drawn from generators seeded by (seed, step, micro-batch).
            "step": self.step,
            "train_config": self.config.to_dict(),
            "world_size": self.dist.world_size,
            "best_val": self.best_val if math.isfinite(self.best_val) else None,
            "best_step": self.best_step,
            "elapsed": self.elapsed,
            "cpu_time": self.cpu_time,
            "wall": self.wall,
            "skipped_steps": self.skipped_steps,
            "rng": rng,
        }

    def save(self) -> None:
        """Write the latest checkpoint (rank 0 only)."""
        if self.dist.is_main:
            save_checkpoint(self.out_dir / CHECKPOINT, self.state_dict())
        self.checkpoint_step = self.step

    def _save_best(self) -> None:
        save_checkpoint(
            self.out_dir / BEST,
            {**self.extra, "model": self.model.state_dict(), "step": self.step, "val_loss": self.best_val},
        )

    def resume(self, path: str | os.PathLike | None = None) -> None:
        """Restore the state saved in ``path`` (default: ``out_dir/ckpt.safetensors``) so that
        `fit` continues as if never stopped; metrics.jsonl loses the records written after it."""
        path = Path(path) if path is not None else self.out_dir / CHECKPOINT
        payload = on_main_then_broadcast(lambda: load_checkpoint(path))  # rank 0's disk holds it
        load_weights(self.model, payload, path)
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            self.step = int(payload["step"])
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{path} has no usable optimizer state for this model: {e!r}") from e
        self.best_val = payload.get("best_val") if payload.get("best_val") is not None else math.inf
        self.best_step = int(payload.get("best_step", 0))
        self.elapsed = float(payload.get("elapsed", 0.0))
        # Checkpoints older than the CPU clock: their training wall time is the nearest figure.
        self.cpu_time = float(payload.get("cpu_time", self.elapsed))
        # Checkpoints older than the wall clock: the training time is the best lower bound known.
        self.wall = float(payload.get("wall", self.elapsed))
        self.skipped_steps = int(payload.get("skipped_steps", 0))
        self.checkpoint_step = self.step
        rng = payload.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        # The micro-batch streams depend on world_size x grad_accum (see _train_step).
        saved_split = int(payload.get("world_size", 1)) * int(payload.get("train_config", {}).get("grad_accum", 1))
        if saved_split != self.dist.world_size * self.config.grad_accum and self.dist.is_main:
            print(f"note: {path} was trained with world_size x grad_accum = {saved_split}, now "
                  f"{self.dist.world_size * self.config.grad_accum}: the batches differ from an uninterrupted run")
        if self.dist.is_main:
            _truncate_metrics(self.out_dir / METRICS, self.step)

    def _start_fresh(self) -> None:
        """fit() from step 0 starts a new run in out_dir: the files of an earlier run there go
        (call `resume` first to continue it instead; the CLI refuses without --resume)."""
        old = [p for p in (self.out_dir / CHECKPOINT, self.out_dir / BEST) if p.exists()]
        if old:
            print(f"note: starting a new run in {self.out_dir}; removing the earlier run's {', '.join(p.name for p in old)}")
            for p in old:
                p.unlink()
        (self.out_dir / METRICS).write_text("")

    # --- training -------------------------------------------------------------------------------

    def _train_step(self) -> tuple[float, float, int]:
        """One optimizer step over grad_accum micro-batches -> (mean loss, grad norm, tokens). A
        step whose loss or gradient norm is NaN/Inf is not applied (the step still counts)."""
        cfg, rank = self.config, self.dist.rank
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        tokens = 0
        for micro in range(cfg.grad_accum):
            seed = mix_seed(cfg.seed, self.step, rank * cfg.grad_accum + micro)
            torch.manual_seed(seed)  # dropout masks depend on (step, micro-batch) only
            x, y = (to_device(t, self.device) for t in self.get_batch("train", torch.Generator().manual_seed(seed)))
            tokens += positions(x)
            # DDP: all-reduce the gradients once, on the last micro-batch.
            last = micro == cfg.grad_accum - 1
            sync = self.train_model.no_sync() if self.train_model is not self.model and not last else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    loss = self.loss_fn(self.train_model, x, y)
                (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        loss = loss_sum / cfg.grad_accum
        if self.dist.world_size > 1:  # log the global batch's loss, as one process would
            dist.all_reduce(loss)
            loss /= self.dist.world_size
        # Both are the same on every rank (grads are all-reduced), so every rank decides alike.
        loss_value, norm_value = loss.item(), grad_norm.item()
        if math.isfinite(loss_value) and math.isfinite(norm_value):
            self.optimizer.step()  # a NaN/Inf step would poison the weights and the Adam moments
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss_value, norm_value, tokens * self.dist.world_size

    def _over_budget(self) -> bool:
        """Whether the run has spent ``config.time_budget`` (on rank 0's clock, which decides for
        every rank)."""
        cfg = self.config
        if cfg.time_budget <= 0:
            return False
        spent = self.cpu_time if cfg.budget_clock == "cpu_time" else self.elapsed
        over = spent >= cfg.time_budget
        if self.dist.world_size > 1:
            (over,) = _broadcast_flags(self.device, over)
        return over

    def _out_of_patience(self) -> bool:
        """True once ``config.patience`` validations in a row brought no new best val_loss (counted
        from ``best_step``, so a resumed run counts on)."""
        cfg = self.config
        return cfg.patience > 0 and self.step - self.best_step >= cfg.patience * cfg.eval_every

    def fit(self) -> dict:
        """Train until ``config.steps`` or until ``config.time_budget`` is spent; returns the last metrics record (of a run that had nothing
        left to train: the one on disk). Raises `TrainingDiverged` when the loss goes NaN/Inf (see
        ``TrainConfig.on_nonfinite``)."""
        cfg, main = self.config, self.dist.is_main
        metrics_path = self.out_dir / METRICS
        if self.step == 0 and main:
            self._start_fresh()
        writer = _tensorboard(self.out_dir) if cfg.tensorboard and main else None
        ckpt_every = cfg.ckpt_every or cfg.eval_every
        self.model.train()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True, disable=not main)
        last: dict = {}
        session_tokens, session_time = 0, 0.0  # for the progress bar's average tokens/s
        tick = time.perf_counter()  # wall clock: a step's checkpoint write counts in the next step
        while self.step < cfg.steps and not self._over_budget():
            t0, c0 = time.perf_counter(), time.process_time()
            loss, grad_norm, tokens = self._train_step()
            dt = time.perf_counter() - t0
            self.elapsed += dt
            self.cpu_time += time.process_time() - c0
            session_tokens, session_time = session_tokens + tokens, session_time + dt
            record = {
                "step": self.step,
                "train_loss": loss,
                "lr": self.optimizer.param_groups[0]["lr"],
                "grad_norm": grad_norm,  # before clipping
                "tokens": tokens,  # in this step's global batch
                "tok_s": round(tokens / dt, 1),
                "time": round(self.elapsed, 3),  # training seconds so far (evaluation excluded)
                "cpu_time": round(self.cpu_time, 3),  # process CPU seconds of the same
            }
            nonfinite = {k: record[k] for k in ("train_loss", "grad_norm") if not math.isfinite(record[k])}
            if nonfinite and cfg.on_nonfinite == "stop":
                self._close(bar, writer, plot=True)
                raise TrainingDiverged(self.step, nonfinite, self.checkpoint_step)
            if nonfinite:  # skipped: the record keeps the finite figures only
                self.skipped_steps += 1
                record = {k: v for k, v in record.items() if k not in nonfinite}
                record["skipped"] = True
            if self.skipped_steps:
                record["skipped_steps"] = self.skipped_steps
            out_of_time = self._over_budget()
            if out_of_time:
                record["budget_stop"] = True  # the last step of this budget: validated and saved
                record["budget"] = [cfg.time_budget, cfg.budget_clock]  # which one (a resumed run may get a larger one)
            final = self.step == cfg.steps or out_of_time
            evaluating, stop, diverged = self.step % cfg.eval_every == 0 or final, False, False
            if main and evaluating:
                record.update(self.validate())  # val_loss and any metrics_fn metrics
                diverged = not math.isfinite(record["val_loss"])
                if not diverged and record["val_loss"] < self.best_val:
                    self.best_val, self.best_step = record["val_loss"], self.step
                    self._save_best()
                stop = self._out_of_patience() or (self.early_stop is not None and bool(self.early_stop(record)))
            if evaluating and self.dist.world_size > 1:
                stop, diverged = _broadcast_flags(self.device, stop, diverged)  # rank 0 decides for all
            if diverged:
                self._close(bar, writer, plot=True)
                raise TrainingDiverged(self.step, {"val_loss": record.get("val_loss", math.nan)}, self.checkpoint_step)
            if stop:
                record["early_stop"] = True
            now = time.perf_counter()
            self.wall, tick = self.wall + (now - tick), now
            record["wall"] = round(self.wall, 3)  # seconds so far, validation included
            if main:
                # The record goes to disk before the checkpoint of its step: after a crash the
                # log reaches at least the checkpoint, and resume cuts what lies beyond it.
                with metrics_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                if writer is not None:
                    for k, v in record.items():
                        if k != "step":
                            writer.add_scalar(k, v, self.step)
                if self.step % ckpt_every == 0 or final or stop:
                    self.save()
            last = record
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", best_val=f"{self.best_val:.3f}", tok_s=f"{session_tokens / session_time:.0f}")
            if stop:
                break
        self._close(bar, writer, plot=bool(last))
        if not last and main:  # nothing left to train (a finished run resumed): its last record
            last = next((r for r in reversed(read_jsonl(metrics_path)) if r.get("step") == self.step), {})
        return last

    def _close(self, bar, writer, plot: bool) -> None:
        """End a session of `fit`: the progress bar, TensorBoard and (if it trained) the loss plot."""
        bar.close()
        if writer is not None:
            writer.close()
        if plot and self.dist.is_main:
            plot_metrics(self.out_dir / METRICS, self.out_dir / "loss.png")


def _broadcast_flags(device: torch.device, *flags: bool) -> tuple[bool, ...]:
    t = torch.tensor([int(f) for f in flags], device=device)
    dist.broadcast(t, src=0)
    return tuple(bool(v) for v in t.tolist())


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the records of steps <= step (a crash may have logged steps past the checkpoint, or
    half a line); rewrite atomically."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the crash
        if isinstance(record, dict) and record.get("step", math.inf) <= step:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("note: --tensorboard needs the `tensorboard` package (pip install 'minrnn[tensorboard]'); logging to metrics.jsonl only")
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))
