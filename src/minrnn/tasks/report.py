"""Results of finished (or still running) training runs, side by side with the paper's figures.

``minrnn report RUN_DIR [RUN_DIR ...] --out results/shakespeare/paper`` reads each run folder's
``config.json``, ``metrics.jsonl`` and ``machine.jsonl`` (written by `minrnn.tasks.base.run_task`)
and writes ``<out>.json``, ``<out>.md`` (a table) and ``<out>.png`` (validation loss against step
and against training time). A task that defines ``PAPER = {preset: {kind: {"val_loss": ...,
"best_step": ...}}}`` gets the paper's columns filled in.

Times are read on one *clock* (``--clock``, as `TrainConfig.budget_clock`): ``wall`` the training
wall-clock seconds (metrics' ``time``), ``cpu_time`` the process CPU seconds of the training steps
(metrics' ``cpu_time``; runs older than that clock fall back to ``time``); both leave validation
out. On it: tokens/s, the time of the best validation, the *time to loss* (when a validation first
reached each of ``--time-to-loss``, or "not reached") and, with ``--at-time T``, the best validation
loss within the first T seconds (a common budget for every run; the validation that ended a time
budget of at most T on the same clock counts, as a run overshoots its budget by less than a step).
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


CLOCKS = {"wall": "time", "cpu_time": "cpu_time"}  # report clock -> metrics field
TIME_TO_LOSS = (1.60, 1.55)


def _clock(record: dict, clock: str) -> float | None:
    return record.get(CLOCKS[clock], record.get("time"))


def _ended_budget(record: dict, clock: str, at_time: float) -> bool:
    """Whether ``record`` is the last step of a time budget of at most ``at_time`` s on ``clock``."""
    budget = record.get("budget")
    return bool(record.get("budget_stop")) and isinstance(budget, list) and budget[1] == clock and budget[0] <= at_time


def _validation(train: dict, evals: list[dict]) -> str:
    """What each validation of a run read, in words."""
    if train.get("validation") == "windows":
        n = evals[-1].get("val_windows") if evals else None
        which = f"{train.get('val_windows')} evenly spaced" if train.get("val_windows") else "all"
        return f"{which} val windows{f' ({n})' if n else ''}"
    return f"{train.get('eval_iters')} random batches of {train.get('batch_size')}"


def summarize_run(run_dir: str | Path, clock: str = "wall", time_to_loss=TIME_TO_LOSS, at_time: float | None = None) -> dict:
    """One run folder -> its config, best validation loss and step, validation curve, steps done,
    times (on ``clock``), tokens/s, time to each loss of ``time_to_loss``, best loss within
    ``at_time`` seconds, hardware."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {list(CLOCKS)}, got {clock!r}")
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
    spent = _clock(last, clock)
    tokens = sum(r.get("tokens", 0) for r in records)
    reached = {}
    for target in time_to_loss:
        first = next((r for r in evals if r["val_loss"] <= target), None)
        reached[f"{target:g}"] = None if first is None else {"step": first["step"], "time_s": _clock(first, clock)}
    at = None
    if at_time is not None:
        # The validation that ended a budget of at most at_time on this clock counts as within it:
        # a run stops at the first step that ends past its budget, so it overshoots by < 1 step.
        within = [r for r in evals if (_clock(r, clock) or 0.0) <= at_time or _ended_budget(r, clock, at_time)]
        ended = result.get("stopped") in ("finished", "early_stop")  # a shorter run that has ended counts as it is
        at = {
            "time_s": at_time,
            "best_val_loss": min(r["val_loss"] for r in within) if within else None,
            "ran_s": spent,
            "short": not ended and (spent or 0.0) < at_time,  # stopped (budget, kill) before at_time
        }
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
        "clock": clock,
        "val_time_curve": [[_clock(r, clock), r["val_loss"]] for r in evals],  # [seconds on clock, val_loss]
        "best_time_s": _clock(best, clock) if best else None,
        "clock_s": spent,
        "tokens_per_s": tokens / spent if spent else None,
        "time_to_loss": reached,  # "1.6" -> {"step", "time_s"} of the first validation at or below it, or None
        "at_time": at,
        "validation": _validation(config["train"], evals),
        "time_budget": config["train"].get("time_budget") or None,
        "budget_clock": config["train"].get("budget_clock", "wall"),
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


def _duration(seconds: float | None) -> str:
    """'1:05 h' from an hour on, '12.5 min' below (time-to-loss figures are often minutes)."""
    if seconds is None:
        return "–"
    return _hours(seconds) if seconds >= 3600 else f"{seconds / 60:.1f} min"


def markdown(rows: list[dict], title: str) -> str:
    """The rows as a markdown table, the paper's figures beside ours; times on the rows' clock."""
    clock = rows[0]["clock"] if rows else "wall"
    targets = list(rows[0]["time_to_loss"]) if rows else []
    at_time = rows[0]["at_time"]["time_s"] if rows and rows[0]["at_time"] else None
    head = ["model", "parameters", "best val loss", "at step", "at time", "paper's loss", "paper's step", "tokens/s"]
    head += [f"time to {t}" for t in targets]
    if at_time is not None:
        head.append(f"best val loss by {_duration(at_time)}")
    head += ["steps run", "training time", "wall time", "validation", "hardware"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        steps = f"{r['steps']} / {r['planned_steps']}"
        if r["stopped"] == "diverged":
            steps += f" (diverged at step {r['diverged_at']})"
        elif r["early_stop"]:
            steps += " (early stop)"
        elif r["stopped"] == "time_budget":
            steps += " (time budget)"
        elif not r["finished"]:
            steps += " (running or stopped)"
        cells = [
            r["kind"], f"{r['parameters'] / 1e6:.2f}M", _num(r["best_val_loss"], ".4f"), _num(r["best_step"], "d"),
            _duration(r["best_time_s"]), _num(r["paper_val_loss"], ".3f"), _num(r["paper_best_step"], "d"),
            _num(r["tokens_per_s"], ",.0f"),
        ]
        for t in targets:
            hit = r["time_to_loss"][t]
            cells.append("not reached" if hit is None else f"{_duration(hit['time_s'])} (step {hit['step']})")
        if at_time is not None:
            at = r["at_time"]
            cells.append(f"– (ran {_duration(at['ran_s'])})" if at["short"] else _num(at["best_val_loss"], ".4f"))
        cells += [steps, _hours(r["train_time_s"]), _hours(r["wall_s"]), r["validation"], r["hardware"]]
        lines.append("| " + " | ".join(cells) + " |")
    budgets = sorted({(r["time_budget"], r["budget_clock"]) for r in rows if r["time_budget"]})
    notes = [f"Times on the {'process CPU' if clock == 'cpu_time' else 'wall'} clock of the training steps (validation excluded)."]
    if budgets:
        notes.append("Time budget: " + ", ".join(f"{b:g} s of {c}" for b, c in budgets) + ".")
    return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"


def plot(rows: list[dict], png_path: Path) -> Path | None:
    """Validation loss against step (dashed: the paper's best loss) and against time on the rows'
    clock (dotted: the time-to-loss targets), every run; None without matplotlib."""
    plt = pyplot("report plot")
    if plt is None:
        return None
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=100, sharey=True)
    for r in rows:
        if not r["val_curve"]:
            continue
        (line,) = by_step.plot(*zip(*r["val_curve"]), lw=1.5, marker=".", ms=3, label=f"{r['kind']} (best {r['best_val_loss']:.3f} at {r['best_step']})")
        if r["paper_val_loss"] is not None:
            by_step.axhline(r["paper_val_loss"], color=line.get_color(), ls="--", lw=0.8, label=f"paper {r['kind']} {r['paper_val_loss']:.3f}")
        times = [(t / 3600, v) for t, v in r["val_time_curve"] if t is not None]
        if times:
            by_time.plot(*zip(*times), lw=1.5, marker=".", ms=3, color=line.get_color(), label=r["kind"])
    for target in (rows[0]["time_to_loss"] if rows else {}):
        by_time.axhline(float(target), color="grey", ls=":", lw=0.8)
    clock = rows[0]["clock"] if rows else "wall"
    by_step.set_xlabel("step")
    by_time.set_xlabel(f"training time (h, {'process CPU' if clock == 'cpu_time' else 'wall clock'})")
    by_step.set_ylabel("validation loss")
    # The first evaluations dwarf the interesting part: cut them off above 2.5, but never above a
    # run's best loss (a run stopped early by a small budget stays in view).
    bests = [r["best_val_loss"] for r in rows if r["val_curve"] and r["best_val_loss"] is not None and math.isfinite(r["best_val_loss"])]
    by_step.set_ylim(top=min(by_step.get_ylim()[1], max([2.5] + [b + 0.2 for b in bests])))
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def write_report(
    run_dirs: list[str | Path],
    out: str | Path,
    title: str | None = None,
    clock: str = "wall",
    time_to_loss=TIME_TO_LOSS,
    at_time: float | None = None,
) -> dict:
    """Summarize ``run_dirs`` into ``<out>.json``, ``<out>.md`` and ``<out>.png`` (times on
    ``clock``, see the module docstring); returns the JSON payload ({"runs": [...], "table": markdown})."""
    if not run_dirs:
        raise ValueError("no run folders given")
    if at_time is not None and not (math.isfinite(at_time) and at_time > 0):
        raise ValueError(f"at_time must be a number of seconds > 0, got {at_time}")
    if not time_to_loss or not all(math.isfinite(t) for t in time_to_loss):
        raise ValueError(f"time_to_loss must be a non-empty list of finite losses, got {list(time_to_loss)}")
    rows = [summarize_run(d, clock, time_to_loss, at_time) for d in run_dirs]
    title = title or f"{rows[0]['task']} ({rows[0]['preset']} preset)"
    table = markdown(rows, title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"runs": rows, "table": table}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    plot(rows, out.with_suffix(".png"))
    return payload
