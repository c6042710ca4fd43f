"""Results of finished (or still running) training runs, side by side with the paper's figures.

``minrnn report RUN_DIR [RUN_DIR ...] --out results/shakespeare/paper`` reads each run folder's
``config.json``, ``metrics.jsonl`` and ``machine.jsonl`` (written by `minrnn.tasks.base.run_task`)
and writes ``<out>.json``, ``<out>.md`` (a table) and ``<out>.png`` (validation loss against step).
A task that defines ``PAPER = {preset: {kind: {"val_loss": ..., "best_step": ...}}}`` gets the
paper's columns filled in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from minrnn.models import build_model
from minrnn.tasks import TASKS
from minrnn.tasks.base import is_run_config, read_json, read_result
from minrnn.train.plot import pyplot, read_jsonl


def _hardware(sessions: list[dict]) -> str:
    """'AMD EPYC, 2 CPU threads' or the GPU's name; sessions on different machines joined by ' + '."""
    names = []
    for s in sessions:
        if s.get("gpu"):
            name = f"{s['gpu']}" + (f" x{s['world_size']}" if s.get("world_size", 1) > 1 else "")
        else:
            name = f"{s.get('cpu_model', '?')}, {s.get('torch_threads_default', '?')} CPU threads"
            if s.get("world_size", 1) > 1:
                name += f" x{s['world_size']} processes"
        if name not in names:
            names.append(name)
    return " + ".join(names) or "unknown"


def summarize_run(run_dir: str | Path) -> dict:
    """One run folder -> its config, best validation loss and step, validation curve, steps done,
    times, hardware."""
    run = Path(run_dir)
    config_path = run / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{run} is not a run folder: it has no config.json")
    config = read_json(config_path)
    if not is_run_config(config):
        raise ValueError(f"{config_path} is not the config of a `minrnn train` run (unreadable, or not its keys)")
    result = read_result(run) or {}
    records = read_jsonl(run / "metrics.jsonl")
    if not records:
        why = f": the run diverged at step {result.get('step')}" if result.get("stopped") == "diverged" else ""
        raise ValueError(f"{run} has no metrics yet (metrics.jsonl is empty){why}")
    evals = [r for r in records if "val_loss" in r]
    best = min(evals, key=lambda r: r["val_loss"]) if evals else None
    last = records[-1]
    sessions = read_jsonl(run / "machine.jsonl")
    model = build_model(config["arch"], config["model"])
    paper = getattr(TASKS.get(config["task"]), "PAPER", {}).get(config.get("preset"), {}).get(config["kind"], {})
    return {
        "run": str(run),
        "task": config["task"],
        "preset": config.get("preset"),
        "kind": config["kind"],
        "parameters": sum(p.numel() for p in set(model.parameters())),
        "steps": last["step"],
        "planned_steps": config["train"]["steps"],
        "finished": bool(result) and result.get("stopped") != "diverged",
        "early_stop": bool(last.get("early_stop", False)),
        "stopped": result.get("stopped"),  # finished, early_stop, diverged; None: running or killed
        "diverged_at": result.get("step") if result.get("stopped") == "diverged" else None,
        "best_val_loss": best["val_loss"] if best else None,
        "best_step": best["step"] if best else None,
        "last_val_loss": evals[-1]["val_loss"] if evals else None,
        "val_curve": [[r["step"], r["val_loss"]] for r in evals],  # [step, val_loss] pairs, for the plot
        "train_time_s": last.get("time"),  # optimizer steps only
        "wall_s": last.get("wall"),  # validation and checkpoints included
        "wall_to_best_s": best.get("wall") if best else None,
        "hardware": _hardware(sessions),
        "torch": sorted({s["versions"]["torch"] for s in sessions if "versions" in s}),
        "paper_val_loss": paper.get("val_loss"),
        "paper_best_step": paper.get("best_step"),
    }


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes = round(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d} h"


def _num(x: float | int | None, fmt: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def markdown(rows: list[dict], title: str) -> str:
    """The rows as a markdown table, the paper's figures beside ours."""
    lines = [
        f"### {title}",
        "",
        "| model | parameters | best val loss | at step | paper's loss | paper's step | steps run | training time | wall time | hardware |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps = f"{r['steps']} / {r['planned_steps']}"
        if r["stopped"] == "diverged":
            steps += f" (diverged at step {r['diverged_at']})"
        elif r["early_stop"]:
            steps += " (early stop)"
        elif not r["finished"]:
            steps += " (running or stopped)"
        lines.append(
            f"| {r['kind']} | {r['parameters'] / 1e6:.2f}M | {_num(r['best_val_loss'], '.4f')} | {_num(r['best_step'], 'd')} "
            f"| {_num(r['paper_val_loss'], '.3f')} | {_num(r['paper_best_step'], 'd')} | {steps} "
            f"| {_hours(r['train_time_s'])} | {_hours(r['wall_s'])} | {r['hardware']} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], png_path: Path) -> Path | None:
    """Validation loss against step for every run (dashed: the paper's best loss); None without
    matplotlib."""
    plt = pyplot("report plot")
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for r in rows:
        if not r["val_curve"]:
            continue
        (line,) = ax.plot(*zip(*r["val_curve"]), lw=1.5, label=f"{r['kind']} (best {r['best_val_loss']:.3f} at {r['best_step']})")
        if r["paper_val_loss"] is not None:
            ax.axhline(r["paper_val_loss"], color=line.get_color(), ls="--", lw=0.8, label=f"paper {r['kind']} {r['paper_val_loss']:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_ylim(top=min(ax.get_ylim()[1], 2.5))  # the first evaluations dwarf the interesting part
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def write_report(run_dirs: list[str | Path], out: str | Path, title: str | None = None) -> dict:
    """Summarize ``run_dirs`` into ``<out>.json``, ``<out>.md`` and ``<out>.png``; returns the
    JSON payload ({"runs": [...], "table": markdown})."""
    if not run_dirs:
        raise ValueError("no run folders given")
    rows = [summarize_run(d) for d in run_dirs]
    title = title or f"{rows[0]['task']} ({rows[0]['preset']} preset)"
    table = markdown(rows, title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"runs": rows, "table": table}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    plot(rows, out.with_suffix(".png"))
    return payload
