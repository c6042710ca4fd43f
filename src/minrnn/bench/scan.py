"""The scan alone against memory bandwidth: how close each backend gets to the speed of a copy.

A linear scan does almost no arithmetic per element, so its floor is the time to move its tensors
through memory once. For each backend this times `functional.linear_scan`, `min_gru` and
`min_lstm` on (B, T, H) inputs, forward alone and forward + backward, converts the time into an
effective bandwidth (the bytes that must move at least once, below) and compares it with the
measured bandwidth of a large tensor copy on the same device and thread count.

Bytes that must move, in (B, T, H) tensors of the dtype's size (h0 and mask are not used):

    op           forward                      forward + backward (backward reads the saved h)
    linear_scan  3: read a, b; write h        8: + read grad_h, a, h; write grad_a, grad_b
    min_gru      3: read gate, cand; write h  9: + read grad_h, gate, cand, h; write 2 grads
    min_lstm     4: read f, i, cand; write h  12: + read grad_h, f, i, cand, h; write 3 grads

Usage: ``minrnn bench scan --threads 1`` (see benchmarks/README.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from minrnn import functional
from minrnn.bench.common import (
    DTYPES,
    default_backend_name,
    fmt_ms,
    format_table,
    median_or_none,
    num_threads,
    result_path,
    time_interleaved,
    time_steps,
    write_json,
)
from minrnn.train.device import resolve_device
from minrnn.train.machine import machine_info

OPS = ("linear_scan", "min_gru", "min_lstm")
# (B, T, H) tensors moved: forward, forward + backward (see the module docstring).
TENSORS_MOVED = {"linear_scan": (3, 8), "min_gru": (3, 9), "min_lstm": (4, 12)}
N_INPUTS = {"linear_scan": 2, "min_gru": 2, "min_lstm": 3}


@dataclass
class ScanConfig:
    """Everything that defines a run; saved in the JSON beside the results."""

    batch: int = 64
    seq_len: int = 4096
    hidden: int = 256
    threads: list[int] = field(default_factory=lambda: sorted({1, os.cpu_count() or 1}))
    backends: list[str] = field(default_factory=list)  # empty: every backend that runs on the device
    ops: list[str] = field(default_factory=lambda: list(OPS))
    repeats: int = 5
    warmup: int = 1
    budget_s: float = 60.0  # per measurement (one op, backend, pass and thread count)
    copy_mib: float = 256.0  # size of the tensor copied to measure memory bandwidth
    device: str = "auto"
    dtype: str = "float32"
    seed: int = 0

    def validate(self) -> None:
        for name in ("batch", "seq_len", "hidden", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not self.budget_s >= 0:
            raise ValueError(f"budget must be >= 0 seconds, got {self.budget_s}")
        if not self.threads or any(n < 1 for n in self.threads):
            raise ValueError(f"threads must be positive ints, got {self.threads}")
        if not self.backends:
            probe = torch.empty(0, device=resolve_device(self.device), dtype=DTYPES[self.dtype])
            self.backends = functional.available_backends(probe)
        bad = [b for b in self.backends if b not in functional.available_backends()]
        if bad:
            raise ValueError(f"unknown backend(s) {bad}; available: {functional.available_backends()}")
        bad = [o for o in self.ops if o not in OPS]
        if bad or not self.ops:
            raise ValueError(f"unknown op(s) {bad}; choose from {list(OPS)}")
        if self.copy_mib <= 0:
            raise ValueError(f"copy_mib must be > 0, got {self.copy_mib}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")


def _inputs(op: str, B: int, T: int, H: int, gen: torch.Generator) -> list[Tensor]:
    """Fresh inputs: for linear_scan a decay in (0, 1) (the log backend needs a > 0) and any b;
    pre-activations from N(0, 1) for the cells."""
    if op == "linear_scan":
        return [torch.sigmoid(torch.randn(B, T, H, generator=gen)), torch.randn(B, T, H, generator=gen)]
    return [torch.randn(B, T, H, generator=gen) for _ in range(N_INPUTS[op])]


def _call(op: str, inputs: list[Tensor], backend: str) -> Tensor:
    return getattr(functional, op)(*inputs, backend=backend)


def _forward(op: str, inputs: list[Tensor], backend: str) -> Callable[[], None]:
    """One forward call of ``op`` (inputs without grad: nothing is saved for backward)."""
    return lambda: _call(op, inputs, backend)


def _forward_backward(op: str, inputs: list[Tensor], grad_h: Tensor, backend: str) -> Callable[[], None]:
    """One forward + backward of ``op`` on leaf copies of ``inputs``; drops the gradients after."""
    leaves = [t.detach().requires_grad_() for t in inputs]

    def step() -> None:
        _call(op, leaves, backend).backward(grad_h)
        for t in leaves:
            t.grad = None

    return step


def copy_bandwidth(n_bytes: int, device: torch.device, dtype: torch.dtype, repeats: int) -> tuple[float, list[float]]:
    """GB/s of ``dst.copy_(src)`` on tensors of ``n_bytes``, counting read + write (2 x n_bytes),
    as STREAM's copy does; returns (GB/s of the median, raw times)."""
    n = max(1, n_bytes // (torch.finfo(dtype).bits // 8))
    src = torch.rand(n, device=device).to(dtype)
    dst = torch.empty_like(src)
    timing = time_steps(lambda: dst.copy_(src), device, repeats=repeats, warmup=1)
    return 2 * src.numel() * src.element_size() / timing.median_s / 1e9, timing.times_s


def run_scan(cfg: ScanConfig, log: Callable[[str], None] | None = None) -> dict:
    """Time every (op, backend, pass) per thread count; returns the result dict written as JSON."""
    cfg.validate()
    log = log or (lambda s: None)
    device = resolve_device(cfg.device)
    dtype = DTYPES[cfg.dtype]
    B, T, H = cfg.batch, cfg.seq_len, cfg.hidden
    elem_bytes = torch.finfo(dtype).bits // 8
    default_backend = default_backend_name(device, dtype)
    thread_counts = cfg.threads if device.type == "cpu" else [torch.get_num_threads()]
    machine = machine_info(device)  # at the start: its load average is the one the run began under
    start = time.perf_counter()

    bandwidth, measurements = [], []
    for threads in thread_counts:
        with num_threads(threads):
            gbps, times = copy_bandwidth(int(cfg.copy_mib * 2**20), device, dtype, cfg.repeats)
            bandwidth.append({"threads": threads, "copy_gbps": gbps, "times_s": times, "bytes": int(cfg.copy_mib * 2**20)})
            log(f"threads={threads} copy bandwidth: {gbps:.1f} GB/s")
            for op in cfg.ops:
                gen = torch.Generator().manual_seed(cfg.seed)
                inputs = [t.to(device, dtype) for t in _inputs(op, B, T, H, gen)]
                grad_h = torch.randn(B, T, H, generator=gen).to(device, dtype)
                steps = {}
                for backend in cfg.backends:
                    steps[backend, "fwd"] = _forward(op, inputs, backend)
                    steps[backend, "fwd+bwd"] = _forward_backward(op, inputs, grad_h, backend)
                # Side by side: each round calls every backend and pass once.
                timings = time_interleaved(steps, device, repeats=cfg.repeats, warmup=cfg.warmup, budget_s=cfg.budget_s)
                for (backend, pass_), timing in timings.items():
                    n_bytes = TENSORS_MOVED[op][pass_ == "fwd+bwd"] * B * T * H * elem_bytes
                    eff = n_bytes / timing.median_s / 1e9
                    measurements.append(
                        {
                            "op": op,
                            "backend": backend,
                            "pass": pass_,
                            "threads": threads,
                            "bytes": n_bytes,
                            "median_s": timing.median_s,
                            "times_s": timing.times_s,
                            "cpu_times_s": timing.cpu_times_s,
                            "warmup_s": timing.warmup_s,
                            "gbps": eff,
                            "fraction_of_copy": eff / gbps,
                        }
                    )
                    log(f"threads={threads} {op} {backend} {pass_}: {fmt_ms(timing.median_s)} ms, {eff:.2f} GB/s")

    return {
        "benchmark": "scan",
        "config": asdict(cfg),
        "default_backend": default_backend,
        "machine": machine,
        "duration_s": time.perf_counter() - start,
        "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "notes": [
            f"shape (B, T, H) = ({B}, {T}, {H}), {cfg.dtype}; time = median wall-clock seconds after "
            f"{cfg.warmup} untimed warm-up call(s); forward with inputs that do not require grad, forward + "
            "backward from a fixed random grad_h with inputs that do. Per op, backends and passes are timed "
            "side by side (each round calls each once).",
            "GB/s = bytes that must move / median time, with bytes = (B, T, H) tensors read or written at least "
            "once x their size: linear_scan 3 (fwd) / 8 (fwd+bwd), min_gru 3 / 9, min_lstm 4 / 12 (see "
            "minrnn/bench/scan.py).",
            f"copy bandwidth = 2 x bytes / median time of dst.copy_(src) on {cfg.copy_mib:g} MiB tensors (read + "
            "write, as STREAM counts; the write-allocate read is not counted), same device and threads.",
            "threads: torch.set_num_threads (the fused CPU kernels follow it).",
        ],
        "bandwidth": bandwidth,
        "measurements": measurements,
    }


def format_scan_table(result: dict) -> str:
    cfg = result["config"]
    parts = []
    short_runs = False
    for bw in result["bandwidth"]:
        threads = bw["threads"]
        rows = []
        for m in result["measurements"]:
            if m["threads"] != threads:
                continue
            short = len(m["times_s"]) < cfg["repeats"]
            short_runs |= short
            rows.append(
                [
                    m["op"],
                    m["backend"],
                    m["pass"],
                    fmt_ms(m["median_s"]) + ("*" if short else ""),
                    fmt_ms(median_or_none(m["cpu_times_s"])),
                    f"{m['gbps']:.2f}",
                    f"{100 * m['fraction_of_copy']:.1f}%",
                ]
            )
        machine = result["machine"]
        parts.append(
            f"scan alone, (B, T, H) = ({cfg['batch']}, {cfg['seq_len']}, {cfg['hidden']}) {cfg['dtype']}, "
            f"{machine['device']} ({machine['gpu'] or machine['cpu_model']}), threads={threads}, median of {cfg['repeats']}; "
            f"copy bandwidth {bw['copy_gbps']:.2f} GB/s ({bw['bytes'] / 2**20:g} MiB); default backend: {result['default_backend']}"
        )
        parts.append(format_table(["op", "backend", "pass", "ms", "cpu ms", "GB/s", "of copy"], rows))
        parts.append("")
    parts.append(
        "GB/s counts the bytes that must move (see the notes in the JSON); 'of copy' = GB/s / copy bandwidth; "
        "cpu ms = process CPU time (all threads; at threads=1, well below ms means a busy machine)."
    )
    if short_runs:
        parts.append("* fewer timed repeats than asked: the time budget ran out (counts in the JSON).")
    return "\n".join(parts)


def run_and_save(cfg: ScanConfig, out_dir: str | Path, log: Callable[[str], None] | None = None) -> dict:
    """Run and write the JSON; returns the result with its path under ``files``."""
    result = run_scan(cfg, log)
    path = result_path(out_dir, "scan", torch.device(result["machine"]["device"]), "json")
    result["files"] = {"json": str(path)}
    result["table"] = format_scan_table(result)
    write_json(path, result)
    return result
