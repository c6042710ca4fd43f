"""Cell x depth x seed ablation of a task, tabulated like the paper's Table 1 (mean +- std accuracy).

Each run trains in its own folder ``OUT/<cell>-L<layers>-s<seed>`` (see `minrnn.tasks.base.run_task`).
Runs go seed by seed, so an interrupted ablation still has whole rounds; a run whose folder already
holds a ``result.json`` for the same config is not trained again, so rerunning the command resumes.
After every run the table is rewritten to ``OUT/ablation.json`` and ``OUT/ablation.md``.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from minrnn.tasks.base import read_json, run_config, run_task
from minrnn.train.config import TrainConfig

METRIC = "test_accuracy"


def summarize(runs: list[dict], cells: list[str], layers: list[int]) -> dict:
    """Mean and sample std of the test accuracy per (cell, depth) over the finished runs."""
    table = {}
    for cell in cells:
        for n in layers:
            accs = [r[METRIC] for r in runs if r["cell"] == cell and r["layers"] == n]
            table[f"{cell}/{n}"] = {
                "cell": cell,
                "layers": n,
                "n": len(accs),
                "mean": statistics.fmean(accs) if accs else None,
                "std": statistics.stdev(accs) if len(accs) > 1 else None,
                "runs": accs,
            }
    return table


def markdown(table: dict, cells: list[str], layers: list[int], title: str) -> str:
    """Rows = cells, columns = depths; each cell of the table 'mean +- std (n runs)' in percent."""
    lines = [f"### {title}", "", "| cell | " + " | ".join(f"{n} layer{'s' if n > 1 else ''}" for n in layers) + " |"]
    lines.append("|---|" + "---|" * len(layers))
    for cell in cells:
        row = []
        for n in layers:
            e = table[f"{cell}/{n}"]
            if not e["n"]:
                row.append("–")
            elif e["std"] is None:
                row.append(f"{100 * e['mean']:.1f} (n=1)")
            else:
                row.append(f"{100 * e['mean']:.1f} ± {100 * e['std']:.1f} (n={e['n']})")
        lines.append(f"| {cell} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(
    task: ModuleType,
    name: str,
    preset: str,
    cells: list[str],
    layers: list[int],
    n_seeds: int,
    train_cfg: TrainConfig,
    task_cfg,
    out_dir: str | Path,
) -> dict:
    """Train every cell x depth for seeds ``train_cfg.seed + 0 .. n_seeds - 1``; print and save the table.

    The model is the preset's with ``cell`` and ``n_layers`` replaced. Returns the JSON payload.
    """
    if n_seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {n_seeds}")
    if not cells or any(c not in ("mingru", "minlstm") for c in cells):
        raise ValueError(f"cells must be a non-empty list of mingru / minlstm, got {cells}")
    if not layers or any(n < 1 for n in layers):
        raise ValueError(f"layers must be a non-empty list of positive depths, got {layers}")
    out = Path(out_dir)
    if out.is_dir() and any((out / n).exists() for n in ("ablation.json", "ablation.md")):
        saved = read_json(out / "ablation.json")
        if not (isinstance(saved, dict) and {"table", "runs", "metric"} <= saved.keys()):
            raise ValueError(f"{out} holds an ablation.json / ablation.md that this command did not write; "
                             f"choose another --out (they would be overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    base_model = task.configs(preset)[0]
    runs: list[dict] = []
    payload: dict = {}
    title = f"{name}, preset {preset}: test accuracy (%), mean ± std over seeds"
    for i in range(n_seeds):
        for n in layers:
            for cell in cells:
                model_settings = {**base_model.to_dict(), "n_layers": n}
                run_cfg = replace(train_cfg, seed=train_cfg.seed + i)
                run_dir = out / f"{cell}-L{n}-s{run_cfg.seed}"
                print(f"== {run_dir.name}", flush=True)
                config = run_config(task, name, preset, model_settings, run_cfg, task_cfg, cell)
                result = run_task(task, config, run_dir, reuse=True)
                runs.append({"cell": cell, "layers": n, "seed": run_cfg.seed, "dir": run_dir.name, **result})
                payload = {
                    "task": name,
                    "preset": preset,
                    "metric": METRIC,
                    "train": train_cfg.to_dict(),
                    "task_config": task_cfg.to_dict(),
                    "model": base_model.to_dict(),
                    "table": summarize(runs, cells, layers),
                    "runs": runs,
                }
                (out / "ablation.json").write_text(json.dumps(payload, indent=2) + "\n")
                (out / "ablation.md").write_text(markdown(payload["table"], cells, layers, title))
    print(markdown(payload["table"], cells, layers, title))
    return payload
