"""Run configuration: plain dataclasses, saved as JSON in the run folder."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from minrnn import functional


# TrainConfig.dtype -> the autocast dtype (None: no autocast)
DTYPES = {"float32": None, "bf16": "bfloat16"}
# TrainConfig.validation: random batches (eval_iters of them) or a fixed pass over held-out windows
VALIDATIONS = ("random", "windows")
# TrainConfig.budget_clock: the clock that TrainConfig.time_budget is counted in
BUDGET_CLOCKS = ("wall", "cpu_time")


@dataclass
class TrainConfig:
    """Training hyper-parameters. Batch sizes count sequences of ``context`` tokens.

    ``batch_size`` is the micro-batch of one process; one optimizer step sees
    ``batch_size * grad_accum * world_size`` sequences (the global batch), so a single process
    with ``grad_accum=N`` and N processes with ``grad_accum=1`` train on the same data.
    """

    steps: int = 5000
    batch_size: int = 64  # per process and per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    context: int = 256
    lr: float = 1e-3  # peak learning rate, reached after warm-up
    min_lr: float = 1e-4  # cosine decay ends here at the last step
    warmup_steps: int = 100  # linear warm-up from lr / (warmup_steps + 1)
    lr_schedule: str = "cosine"  # "cosine" (after warm-up) or "constant"
    weight_decay: float = 0.1  # on matrices only; biases, norms and embeddings get none
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 0.25  # max global grad norm; 0: no clipping
    eval_every: int = 25  # steps between validations (and best-checkpoint updates)
    eval_iters: int = 20  # validation batches per evaluation (validation "random")
    # What a validation reads: "random": eval_iters batches of random windows of the held-out split
    # (drawn from a fixed seed, so every evaluation sees the same ones); "windows": one pass over the
    # task's fixed held-out windows (a text task: its validation split cut into non-overlapping
    # windows of context + 1 tokens), all of them or, with val_windows = N > 0, N evenly spaced ones.
    validation: str = "random"
    val_windows: int = 0  # with validation "windows": how many (0: all)
    ckpt_every: int = 0  # steps between checkpoints; 0: at every evaluation
    patience: int = 0  # stop after this many validations in a row without a new best val_loss; 0: never
    seed: int = 1337
    device: str = "auto"  # "auto": cuda if available, else cpu
    backend: str | None = None  # scan backend of the minRNN layers (minrnn.functional); None: automatic
    # "bf16": forward and loss under torch.autocast(bfloat16) (weights, gradients and optimizer
    # state stay float32); pays off on CPUs with AVX512-BF16 / AMX and on GPUs.
    dtype: str = "float32"
    tensorboard: bool = False  # also log to out_dir/tensorboard (needs the `tensorboard` extra)
    # A step whose loss or gradient norm is NaN/Inf is never applied; then "stop": end the run with
    # TrainingDiverged (the last checkpoint is kept), or "skip": go on with the next batch (counted
    # as skipped_steps in the metrics). A non-finite validation loss always stops the run.
    on_nonfinite: str = "stop"
    # Compute budget: stop (validate and checkpoint) once `budget_clock` has reached time_budget
    # seconds (0: no budget), counted over all sessions of a run (resume keeps it), so a run can be
    # extended later with a larger --time-budget. Both clocks count the optimizer steps only,
    # validation and checkpoints excluded: "wall" their wall-clock seconds (the metrics' `time`),
    # "cpu_time" the process CPU seconds they took (the metrics' `cpu_time`: what a shared machine's
    # other load does not inflate, at one thread close to the wall clock of an idle one).
    time_budget: float = 0.0
    budget_clock: str = "wall"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "context", "eval_every", "eval_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "ckpt_every", "patience", "grad_clip", "weight_decay", "lr", "min_lr", "time_budget"):
            if not getattr(self, name) >= 0:  # `not >=` also refuses NaN
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip", "time_budget"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not -(2**63) <= self.seed < 2**63:
            raise ValueError(f"seed must be a 64-bit signed integer, got {self.seed}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {self.on_nonfinite!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.budget_clock not in BUDGET_CLOCKS:
            raise ValueError(f"budget_clock must be one of {list(BUDGET_CLOCKS)}, got {self.budget_clock!r}")
        if self.validation not in VALIDATIONS:
            raise ValueError(f"validation must be one of {list(VALIDATIONS)}, got {self.validation!r}")
        if self.val_windows < 0:
            raise ValueError(f"val_windows must be >= 0 (0: all windows), got {self.val_windows}")
        if self.val_windows and self.validation != "windows":
            raise ValueError(f"val_windows={self.val_windows} applies to validation 'windows' only (pass --validation windows)")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        functional.check_backend(self.backend)

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then cosine
        decay from ``lr`` to ``min_lr`` at the last step (nanoGPT's schedule)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / (self.warmup_steps + 1)
        if self.lr_schedule == "constant" or self.steps <= self.warmup_steps + 1:
            return self.lr
        progress = min(1.0, (step - self.warmup_steps) / (self.steps - 1 - self.warmup_steps))
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.lr - self.min_lr)

    def to_dict(self) -> dict:
        return asdict(self)
