"""Run configuration: plain dataclasses, saved as JSON in the run folder."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from minrnn import functional


# TrainConfig.dtype -> the autocast dtype (None: no autocast)
DTYPES = {"float32": None, "bf16": "bfloat16"}


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
    eval_iters: int = 20  # validation batches per evaluation
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

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "context", "eval_every", "eval_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "ckpt_every", "patience", "grad_clip", "weight_decay", "lr", "min_lr"):
            if not getattr(self, name) >= 0:  # `not >=` also refuses NaN
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip"):
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
