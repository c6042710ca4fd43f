"""Shared benchmark helpers: timing with a budget, peak memory of one step, threads, output.

Every benchmark in `minrnn.bench` times zero-argument callables (one training step, or one scan)
side by side with `time_interleaved`, measures a step's peak extra memory with `peak_memory`, and
writes its raw measurements with `minrnn.train.machine.machine_info` into a JSON file next to a
printed table.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.util
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Hashable, Iterator, Sequence

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# How peak memory is measured, written into every result file.
MEMORY_NOTE_CPU = (
    "CPU peak memory = the highest total of bytes allocated through PyTorch's CPU allocator during "
    "one step, minus what was allocated before it (model, inputs and upstream gradient excluded), read "
    "from a torch.profiler memory trace (profile_memory=True) of a separate, untimed step. It counts "
    "every tensor (activations saved for backward, temporaries, gradients) exactly, independent of "
    "glibc's habit of keeping freed memory (which inflates RSS-based figures for tensors under 32 MiB), "
    "but it does not see memory a library allocates by itself (malloc inside oneDNN, or numpy/numba "
    "arrays created inside a kernel instead of torch.empty); minrnn's CPU ops keep their large outputs in "
    "a cache of numpy buffers (minrnn.ops.cpu_buffers), turned off for this step so that they are counted."
)
MEMORY_NOTE_CUDA = (
    "CUDA peak memory = torch.cuda.max_memory_allocated() during one step minus "
    "torch.cuda.memory_allocated() before it (model, inputs and upstream gradient excluded)."
)


# ----------------------------------------------------------------------------- devices and threads


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def default_backend_name(device: torch.device, dtype: torch.dtype) -> str:
    """The `minrnn.functional` backend an op picks for inputs on ``device`` / ``dtype``."""
    from minrnn import functional

    return functional.get_backend(torch.empty(1, 1, 1, device=device, dtype=dtype)).name


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads for PyTorch. The fused CPU kernels follow
    `torch.get_num_threads()` (their own Python threads, not numba's threading layer, which is
    left alone: starting it here would change numba for the whole process)."""
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    old_torch = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)


# ----------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Seconds of the timed repeats (warm-up excluded); ``skipped`` says why none ran.

    ``times_s`` is wall-clock time, the figure reported. ``cpu_times_s`` is this process's CPU
    time over the same calls (all threads summed): on a shared machine, a 1-thread step whose CPU
    time is well below its wall time was waiting for a core.
    """

    times_s: list[float] = field(default_factory=list)
    cpu_times_s: list[float] = field(default_factory=list)
    warmup_s: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def median_s(self) -> float | None:
        return median_or_none(self.times_s)


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _time_once(step: Callable[[], object], device: torch.device) -> tuple[float, float]:
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_interleaved(
    steps: dict[Hashable, Callable[[], object]],
    device: torch.device,
    *,
    repeats: int,
    warmup: int = 1,
    budget_s: float = float("inf"),
    predicted_s: dict[Hashable, float | None] | None = None,
) -> dict[Hashable, Timing]:
    """Time several callables side by side: ``warmup`` untimed calls each, then ``repeats`` rounds
    that call each once, so a change of machine load hits them all alike and their ratios hold.

    ``budget_s`` caps each callable's warm-up plus repeats: when its ``predicted_s`` (an estimate of
    one call, e.g. scaled from a shorter sequence) says even the warm-up and one timed call would
    overrun it, it never runs and is marked skipped; otherwise it gets at least one timed call and
    leaves the rounds once its next call would overrun (its Timing keeps how many ran).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    predicted_s = predicted_s or {}
    out = {name: Timing() for name in steps}
    active = []
    for name in steps:
        guess = predicted_s.get(name)
        if guess is not None and guess * (warmup + 1) > budget_s:
            out[name].skipped = f"predicted {guess:.3g} s per step x {warmup + 1} > budget {budget_s:g} s"
        else:
            active.append(name)
    spent = dict.fromkeys(active, 0.0)
    for name in active:
        for _ in range(warmup):
            wall, _cpu = _time_once(steps[name], device)
            out[name].warmup_s.append(wall)
            spent[name] += wall
    for _ in range(repeats):
        for name in list(active):
            wall, cpu = _time_once(steps[name], device)
            out[name].times_s.append(wall)
            out[name].cpu_times_s.append(cpu)
            spent[name] += wall
            if spent[name] + wall > budget_s:  # the next call would overrun
                active.remove(name)
    return out


def time_steps(
    step: Callable[[], object],
    device: torch.device,
    *,
    repeats: int,
    warmup: int = 1,
    budget_s: float = float("inf"),
    predicted_s: float | None = None,
) -> Timing:
    """`time_interleaved` for one callable."""
    timings = time_interleaved(
        {"step": step}, device, repeats=repeats, warmup=warmup, budget_s=budget_s, predicted_s={"step": predicted_s}
    )
    return timings["step"]


# ----------------------------------------------------------------------------- memory


def peak_memory(step: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated by one call of ``step`` on top of what was allocated before it.

    See `MEMORY_NOTE_CPU` / `MEMORY_NOTE_CUDA` for what is and is not counted.
    """
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    if device.type != "cpu":
        raise ValueError(f"peak memory is measured on cpu or cuda, got device {device}")
    from torch.profiler import ProfilerActivity, profile

    from minrnn.ops import cpu_buffers

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():  # the profiler prints a line to stderr as it starts and stops
        prof.__enter__()
    try:
        with cpu_buffers.disabled():  # the CPU ops' cached buffers are numpy memory, unseen by the trace
            step()
    finally:
        with _quiet_stderr():
            prof.__exit__(None, None, None)
    # Each "[memory]" event is one allocation (+bytes) or free (-bytes); the running sum in time
    # order is the step's extra allocation, and its maximum is the peak.
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    total = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        total += e.nbytes()
        peak = max(peak, total)
    return peak


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null (C++ logging bypasses sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def memory_note(device: torch.device) -> str:
    return MEMORY_NOTE_CUDA if device.type == "cuda" else MEMORY_NOTE_CPU


# ----------------------------------------------------------------------------- machine


# ----------------------------------------------------------------------------- output


def result_path(out_dir: str | Path, name: str, device: torch.device, suffix: str) -> Path:
    """benchmarks/results/<name>-<device>-<UTC time>.<suffix>; the folder is created."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return out / f"{name}-{device.type}-{stamp}.{suffix}"


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(obj: object) -> object:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, (torch.device, torch.dtype, Path)):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain fixed-width table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt_ms(s: float | None) -> str | None:
    """Seconds -> milliseconds with one decimal (None stays None, shown as "-")."""
    return None if s is None else f"{s * 1e3:.1f}"


def fmt_mib(n: int | None) -> str | None:
    """Bytes -> MiB: one decimal from 1 MiB up, three below (tiny test shapes)."""
    if n is None:
        return None
    mib = n / 2**20
    return f"{mib:.1f}" if mib >= 1 else f"{mib:.3f}"
