"""The paper's Figure 1: training-step time and peak memory of one recurrent layer against T.

For every thread count and sequence length T, each model runs a training step on a batch of
random (B, T, d_in) inputs: forward, then backward from a fixed random upstream gradient G of the
output's shape (the gradient of the loss L = sum(output * G), passed to backward directly so that
no model pays for computing a loss value, and every model gets the same dense gradient a next layer
would send). The input requires grad too, as in any layer inside a network. Gradients are dropped
after each step, so nothing accumulates.

Models (``--models``): ``mingru`` / ``minlstm`` (`minrnn.MinGRU` / `MinLSTM` on the default backend,
plus one row per extra ``--backends`` entry), ``gru`` / ``lstm`` (`torch.nn.GRU` / `LSTM`, cuDNN
or oneDNN), ``loop-gru`` / ``loop-lstm`` (the paper's baselines, `minrnn.bench.baselines`) and
``linear``: each minRNN's own input Linear alone (d_in -> 2 d_h or 3 d_h), the floor a fused layer
is compared with (target: layer step <= 1.2x its Linear).

Usage: ``minrnn bench runtime --seq-lens 64,256 --threads 1 --repeats 3`` (see benchmarks/README.md).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from minrnn import functional
from minrnn.bench.baselines import LoopGRU, LoopLSTM
from minrnn.bench.common import (
    DTYPES,
    default_backend_name,
    fmt_mib,
    fmt_ms,
    format_table,
    median_or_none,
    memory_note,
    num_threads,
    peak_memory,
    result_path,
    time_interleaved,
    write_json,
)
from minrnn.layers import MinGRU, MinLSTM
from minrnn.train.device import resolve_device
from minrnn.train.machine import machine_info

MODEL_KINDS = ("mingru", "minlstm", "gru", "lstm", "loop-gru", "loop-lstm", "linear")
MEMORY_MODES = {
    "allocator": None,  # explained by common.memory_note(device)
    "rss": (
        "CPU peak memory (memory='rss') = peak resident set size (VmHWM, reset through /proc/self/clear_refs) "
        "during one step minus the resident size just before it, each measurement in a fresh Python process "
        "after a warm-up step at T=2 (so JIT compilation and library caches are not counted). It sees every "
        "allocation, torch's or not, but glibc keeps freed blocks under its mmap threshold (up to 32 MiB) "
        "for reuse, so small shapes read high; a cross-check of the allocator figures, not a replacement."
    ),
    "none": "peak memory not measured (memory='none').",
}


@dataclass
class RuntimeConfig:
    """Everything that defines a run; saved in the JSON beside the results."""

    seq_lens: list[int] = field(default_factory=lambda: [64 * 2**i for i in range(7)])  # 64 .. 4096
    batch: int = 64
    d_in: int = 256
    d_h: int = 256
    threads: list[int] = field(default_factory=lambda: sorted({1, os.cpu_count() or 1}))
    models: list[str] = field(default_factory=lambda: list(MODEL_KINDS))
    backends: list[str] = field(default_factory=list)  # extra minRNN backends, beside the default
    repeats: int = 5
    warmup: int = 1
    budget_s: float = 120.0  # per measurement (one model at one T and thread count)
    memory: str = "allocator"  # "allocator", "rss" (CPU: each in a fresh process) or "none"; see MEMORY_MODES
    device: str = "auto"
    dtype: str = "float32"
    seed: int = 0

    def validate(self) -> None:
        if not self.seq_lens or any(t < 1 for t in self.seq_lens):
            raise ValueError(f"seq_lens must be positive ints, got {self.seq_lens}")
        for name in ("batch", "d_in", "d_h", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not self.budget_s >= 0:
            raise ValueError(f"budget must be >= 0 seconds, got {self.budget_s}")
        if not self.threads or any(n < 1 for n in self.threads):
            raise ValueError(f"threads must be positive ints, got {self.threads}")
        bad = [m for m in self.models if m not in MODEL_KINDS]
        if bad or not self.models:
            raise ValueError(f"unknown model kind(s) {bad}; choose from {list(MODEL_KINDS)}")
        bad = [b for b in self.backends if b not in functional.available_backends()]
        if bad:
            raise ValueError(f"unknown backend(s) {bad}; available: {functional.available_backends()}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.memory not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {list(MEMORY_MODES)}, got {self.memory!r}")
        if self.memory == "rss" and resolve_device(self.device).type != "cpu":
            raise ValueError("memory='rss' measures a CPU process; use memory='allocator' on a GPU")


@dataclass(frozen=True)
class Case:
    """One row of the table: a model and the rows it is compared with (by name)."""

    name: str
    kind: str
    ref: str  # "nn.GRU" or "nn.LSTM"
    loop: str | None = None  # "loop GRU" / "loop LSTM" (the paper's baseline), if measured
    backend: str | None = None  # minRNN backend (None: the default one)
    floor: str | None = None  # the Linear-floor row, for minRNN layers


def build_cases(cfg: RuntimeConfig, default_backend: str) -> list[Case]:
    """The rows to measure, in table order, from ``cfg.models`` and ``cfg.backends``."""
    cases: list[Case] = []
    for cell, ref in (("GRU", "nn.GRU"), ("LSTM", "nn.LSTM")):
        kind = "min" + cell.lower()
        floor = f"Linear(min{cell})" if "linear" in cfg.models and kind in cfg.models else None
        loop = f"loop {cell}" if "loop-" + cell.lower() in cfg.models else None
        if cell.lower() in cfg.models:
            cases.append(Case(ref, cell.lower(), ref, loop))
        if kind in cfg.models:
            cases.append(Case(f"min{cell}", kind, ref, loop, None, floor))
            for b in cfg.backends:
                if b != default_backend:  # the default row already measures it
                    cases.append(Case(f"min{cell}[{b}]", kind, ref, loop, b, floor))
        if floor is not None:
            cases.append(Case(floor, "linear-" + kind, ref, loop))
        if loop is not None:
            cases.append(Case(loop, "loop-" + cell.lower(), ref, loop))
    return cases


def build_model(case: Case, d_in: int, d_h: int) -> nn.Module:
    if case.kind == "mingru":
        return MinGRU(d_in, d_h, batch_first=True, backend=case.backend)
    if case.kind == "minlstm":
        return MinLSTM(d_in, d_h, batch_first=True, backend=case.backend)
    if case.kind == "gru":
        return nn.GRU(d_in, d_h, batch_first=True)
    if case.kind == "lstm":
        return nn.LSTM(d_in, d_h, batch_first=True)
    if case.kind == "loop-gru":
        return LoopGRU(d_in, d_h)
    if case.kind == "loop-lstm":
        return LoopLSTM(d_in, d_h)
    if case.kind in ("linear-mingru", "linear-minlstm"):
        # Exactly the projection inside the layer: one Linear to all pre-activations.
        n_proj = MinGRU.n_proj if case.kind == "linear-mingru" else MinLSTM.n_proj
        return nn.Linear(d_in, n_proj * d_h)
    raise ValueError(f"unknown model kind {case.kind!r}")


def training_step(model: nn.Module, x: Tensor, grad_out: Tensor) -> None:
    """Forward, backward from the upstream gradient ``grad_out``, then drop the gradients."""
    y = model(x)
    y = y[0] if isinstance(y, tuple) else y  # RNNs return (output, h_n)
    y.backward(grad_out)
    x.grad = None
    for p in model.parameters():
        p.grad = None


def _out_features(model: nn.Module) -> int:
    return model.out_features if isinstance(model, nn.Linear) else model.hidden_size


def make_inputs(cfg: RuntimeConfig, T: int, widest: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Fresh random input x (B, T, d_in) requiring grad, and a flat buffer of upstream gradients
    (one buffer serves every output width, contiguous, without a copy per model)."""
    gen = torch.Generator().manual_seed(cfg.seed + T)
    x = torch.randn(cfg.batch, T, cfg.d_in, generator=gen).to(device, DTYPES[cfg.dtype]).requires_grad_()
    buf = torch.randn(cfg.batch * T * widest, generator=gen).to(device, DTYPES[cfg.dtype])
    return x, buf


def make_step(model: nn.Module, x: Tensor, grad_buf: Tensor) -> Callable[[], None]:
    """The timed callable: one `training_step` with an upstream gradient of the model's output shape."""
    B, T, _ = x.shape
    width = _out_features(model)
    grad_out = grad_buf[: B * T * width].view(B, T, width)
    return lambda: training_step(model, x, grad_out)


# ----------------------------------------------------------------------------- running


def run_runtime(cfg: RuntimeConfig, log: Callable[[str], None] | None = None) -> dict:
    """Measure every case at every T and thread count; returns the result dict written as JSON."""
    cfg.validate()
    log = log or (lambda s: None)
    device = resolve_device(cfg.device)
    dtype = DTYPES[cfg.dtype]
    default_backend = default_backend_name(device, dtype)
    cases = build_cases(cfg, default_backend)
    torch.manual_seed(cfg.seed)
    models = {c.name: build_model(c, cfg.d_in, cfg.d_h).to(device, dtype) for c in cases}
    widest = max(_out_features(m) for m in models.values())
    # Threads only apply to the CPU; on a GPU one pass is enough.
    thread_counts = cfg.threads if device.type == "cpu" else [torch.get_num_threads()]
    machine = machine_info(device)  # at the start: its load average is the one the run began under
    start = time.perf_counter()

    measurements = []
    for threads in thread_counts:
        last: dict[str, tuple[int, float]] = {}  # case -> (T, median step time) for the budget estimate
        with num_threads(threads):
            for T in sorted(cfg.seq_lens):
                x, buf = make_inputs(cfg, T, widest, device)
                steps = {c.name: make_step(models[c.name], x, buf) for c in cases}
                # Step time grows linearly with T: predict this T from the last one measured.
                predicted = {name: s_prev * T / t_prev for name, (t_prev, s_prev) in last.items()}
                log(f"threads={threads} T={T}: timing {len(steps)} models side by side ...")
                timings = time_interleaved(
                    steps, device, repeats=cfg.repeats, warmup=cfg.warmup, budget_s=cfg.budget_s, predicted_s=predicted
                )
                for case in cases:
                    timing = timings[case.name]
                    peak = None
                    if timing.skipped is None:
                        last[case.name] = (T, timing.median_s)
                        if cfg.memory == "allocator":
                            peak = peak_memory(steps[case.name], device)
                        elif cfg.memory == "rss":
                            peak = peak_rss_in_subprocess(cfg, case.name, T, threads)
                    measurements.append(
                        {
                            "model": case.name,
                            "kind": case.kind,
                            "ref": case.ref,
                            "loop": case.loop,
                            "floor": case.floor,
                            "backend": (case.backend or default_backend) if case.kind in ("mingru", "minlstm") else None,
                            "T": T,
                            "threads": threads,
                            "median_s": timing.median_s,
                            "times_s": timing.times_s,
                            "cpu_times_s": timing.cpu_times_s,
                            "warmup_s": timing.warmup_s,
                            "skipped": timing.skipped,
                            "peak_bytes": peak,
                        }
                    )
                    status = f"skipped ({timing.skipped})" if timing.skipped else f"{fmt_ms(timing.median_s)} ms"
                    if peak is not None:
                        status += f", peak {fmt_mib(peak)} MiB"
                    log(f"threads={threads} T={T} {case.name}: {status}")
                del x, buf

    return {
        "benchmark": "runtime",
        "config": asdict(cfg),
        "default_backend": default_backend,
        "memory_method": cfg.memory,
        "machine": machine,
        "duration_s": time.perf_counter() - start,
        "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "notes": [
            "time = median wall-clock seconds of one training step of one layer: forward, then backward "
            "from a fixed random upstream gradient G of the output's shape (the gradient of L = sum(y * G)); "
            "the input requires grad; gradients are dropped after each step. Warm-up steps are not timed. "
            "At each T the models are timed side by side: after the warm-ups, each round runs every model "
            "once, so load changes on a shared machine hit all rows alike. cpu_times_s = this process's CPU "
            "time per step (all threads): well below the wall time at 1 thread means it waited for a core.",
            "speedup vs nn = median time of nn.GRU (GRU rows) or nn.LSTM (LSTM rows) / median time of the row; "
            "vs loop = the same against loop GRU / loop LSTM (the paper's Figure 1 speedups are of this kind); "
            "x Linear = median time of a minRNN row / median time of its own input Linear alone (same step).",
            "loop GRU / loop LSTM = the paper's baselines, plain PyTorch loops over time (input projections "
            "of all steps in one matmul before the loop; unbind, not x[:, t]); same outputs as nn.GRU / nn.LSTM.",
            f"budget: a measurement stops repeating once warm-up + repeats would pass {cfg.budget_s:g} s, and is "
            "skipped when the step time predicted from the previous T (linear in T) says warm-up + one step would.",
            "threads: torch.set_num_threads (the fused CPU kernels follow it).",
            MEMORY_MODES[cfg.memory] or memory_note(device),
        ],
        "measurements": measurements,
    }


# ----------------------------------------------------------------------------- memory as RSS


def _proc_status_bytes(field_name: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise ValueError(f"no {field_name} in /proc/self/status: memory='rss' needs Linux")


def rss_probe(cfg: RuntimeConfig, model_name: str, T: int, threads: int) -> int:
    """Peak RSS growth of one training step of ``model_name`` at length T, in this process.

    Meant for a fresh process (`peak_rss_in_subprocess`): earlier steps of other models would leave
    freed memory resident and hide part of this step's peak.
    """
    device = torch.device("cpu")
    default_backend = default_backend_name(device, DTYPES[cfg.dtype])
    case = next(c for c in build_cases(cfg, default_backend) if c.name == model_name)
    torch.manual_seed(cfg.seed)
    model = build_model(case, cfg.d_in, cfg.d_h).to(device, DTYPES[cfg.dtype])
    width = _out_features(model)
    with num_threads(threads):
        make_step(model, *make_inputs(cfg, min(T, 2), width, device))()  # warm-up: JIT, caches
        step = make_step(model, *make_inputs(cfg, T, width, device))
        gc.collect()
        base = _proc_status_bytes("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        except OSError as e:
            raise ValueError(f"cannot reset the peak RSS through /proc/self/clear_refs ({e}); use memory='allocator'") from None
        step()
        return _proc_status_bytes("VmHWM") - base


def peak_rss_in_subprocess(cfg: RuntimeConfig, model_name: str, T: int, threads: int) -> int:
    """Run `rss_probe` in a fresh Python process (``python -m minrnn.bench.runtime``); returns bytes."""
    spec = json.dumps({"config": asdict(cfg), "model": model_name, "T": T, "threads": threads})
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # the folder holding the minrnn package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "minrnn.bench.runtime", "--rss-probe", spec], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"rss probe for {model_name} at T={T} failed:\n{proc.stderr[-2000:]}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_bytes"])


# ----------------------------------------------------------------------------- reporting


def format_runtime_table(result: dict) -> str:
    """One table per thread count: time, speedup vs nn.GRU/LSTM, x Linear floor, peak memory and its ratio."""
    cfg = result["config"]
    rows_by_threads: dict[int, list] = {}
    index = {(m["model"], m["T"], m["threads"]): m for m in result["measurements"]}
    short_runs = False
    for m in result["measurements"]:
        ref = index.get((m["ref"], m["T"], m["threads"]))
        loop = index.get((m["loop"], m["T"], m["threads"])) if m["loop"] else None
        floor = index.get((m["floor"], m["T"], m["threads"])) if m["floor"] else None
        t, mem = m["median_s"], m["peak_bytes"]
        speedup = _ratio(ref and ref["median_s"], t)
        vs_loop = _ratio(loop and loop["median_s"], t)
        x_floor = _ratio(t, floor and floor["median_s"])
        mem_ratio = _ratio(mem, ref and ref["peak_bytes"])
        time_cell = fmt_ms(t) if t is not None else "skipped"
        if t is not None and len(m["times_s"]) < cfg["repeats"]:
            time_cell += "*"
            short_runs = True
        rows_by_threads.setdefault(m["threads"], []).append(
            [
                m["T"],
                m["model"],
                time_cell,
                fmt_ms(median_or_none(m["cpu_times_s"])),
                None if speedup is None else f"{speedup:.2f}x",
                None if vs_loop is None else f"{vs_loop:.2f}x",
                None if x_floor is None else f"{x_floor:.2f}",
                fmt_mib(mem),
                None if mem_ratio is None else f"{mem_ratio:.2f}",
            ]
        )
    machine = result["machine"]
    headers = ["T", "model", "ms/step", "cpu ms", "speedup vs nn", "vs loop", "x Linear", "peak MiB", "mem / nn"]
    parts = []
    for threads, rows in rows_by_threads.items():
        parts.append(
            f"training step (forward + backward), B={cfg['batch']} d_in={cfg['d_in']} d_h={cfg['d_h']} "
            f"{cfg['dtype']}, {machine['device']} ({machine['gpu'] or machine['cpu_model']}), threads={threads}, "
            f"median of {cfg['repeats']}, default backend: {result['default_backend']}"
        )
        parts.append(format_table(headers, [[str(r[0])] + r[1:] for r in rows]))
        parts.append("")
    parts.append(
        "speedup vs nn = time(nn.GRU or nn.LSTM) / time; vs loop = time(loop GRU or loop LSTM, the paper's "
        "baseline) / time; x Linear = time / time(own Linear alone); mem / nn = peak / peak(nn.GRU or nn.LSTM).\n"
        "cpu ms = process CPU time per step (all threads); at threads=1, well below ms/step means the step "
        "waited for a core (a busy machine): compare ratios, or rerun when it is quiet."
    )
    if short_runs:
        parts.append("* fewer timed repeats than asked: the time budget ran out (counts in the JSON).")
    return "\n".join(parts)


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def plot_runtime(result: dict, path: str | Path) -> None:
    """Log-log step time vs T and memory vs T (one row per thread count), like the paper's Figure 1.

    Needs matplotlib (``pip install -e '.[plot]'``).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    cfg = result["config"]
    by_threads: dict[int, dict[str, list]] = {}
    for m in result["measurements"]:
        by_threads.setdefault(m["threads"], {}).setdefault(m["model"], []).append(m)
    fig, axes = plt.subplots(len(by_threads), 2, figsize=(12, 4.5 * len(by_threads)), squeeze=False)
    for row, (threads, models) in enumerate(by_threads.items()):
        ax_t, ax_m = axes[row]
        for name, ms in models.items():
            style = "--" if name.startswith("Linear") else ":" if name.startswith("loop") else "-"
            ok = [m for m in ms if m["median_s"] is not None]
            if ok:
                ax_t.plot([m["T"] for m in ok], [m["median_s"] * 1e3 for m in ok], style, marker="o", label=name)
            mem = [m for m in ms if m["peak_bytes"] is not None]
            if mem:
                ax_m.plot([m["T"] for m in mem], [m["peak_bytes"] / 2**20 for m in mem], style, marker="o", label=name)
        for ax, ylabel in ((ax_t, "training step (ms)"), (ax_m, "peak extra memory (MiB)")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(cfg["seq_lens"]), [str(t) for t in sorted(cfg["seq_lens"])])
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 2, 5, 10, ... not 10^1
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("sequence length T")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{ylabel.split(' (')[0]}, threads={threads}")
            ax.grid(True, which="both", alpha=0.3)
        ax_t.legend(fontsize=8)
    machine = result["machine"]
    fig.suptitle(
        f"minrnn runtime: B={cfg['batch']}, d_in={cfg['d_in']}, d_h={cfg['d_h']}, {cfg['dtype']}, "
        f"{machine['gpu'] or machine['cpu_model']}, torch {machine['versions']['torch']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_and_save(cfg: RuntimeConfig, out_dir: str | Path, plot: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Run, write JSON (and the PNG if asked and matplotlib is installed); returns the result with its paths."""
    result = run_runtime(cfg, log)
    device = torch.device(result["machine"]["device"])
    json_path = result_path(out_dir, "runtime", device, "json")
    result["files"] = {"json": str(json_path)}
    if plot:
        try:
            png_path = json_path.with_suffix(".png")
            plot_runtime(result, png_path)
            result["files"]["png"] = str(png_path)
        except ImportError:
            result["files"]["png"] = None
            result["notes"].append("no plot: matplotlib is not installed (pip install -e '.[plot]').")
    result["table"] = format_runtime_table(result)
    write_json(json_path, result)
    return result


if __name__ == "__main__":
    # Internal entry point of `peak_rss_in_subprocess`: python -m minrnn.bench.runtime --rss-probe SPEC
    if len(sys.argv) != 3 or sys.argv[1] != "--rss-probe":
        sys.exit("usage: python -m minrnn.bench.runtime --rss-probe JSON (internal; use `minrnn bench runtime`)")
    spec = json.loads(sys.argv[2])
    peak = rss_probe(RuntimeConfig(**spec["config"]), spec["model"], spec["T"], spec["threads"])
    print(json.dumps({"peak_rss_bytes": peak}))
