"""Grids of training runs over seeds, tabulated as mean +- std:

- `run_ablation`: cell x depth x seed of a task, like the paper's Table 1 (test accuracy); each run
  in ``OUT/<cell>-L<layers>-s<seed>``;
- `run_rl_benchmark`: offline RL, model kind x dataset x seed, like the paper's Table 3 (normalised
  score of the evaluation episodes, beside the dataset's own mean return); each run in
  ``OUT/<dataset>-<kind>-s<seed>``.

Each run trains in its own folder (see `minrnn.tasks.base.run_task`). Runs go seed by seed, so an
interrupted grid still has whole rounds; a run whose folder already holds a ``result.json`` for
the same config is not trained again, so rerunning the command resumes. After every run the table
is rewritten to ``OUT/ablation.json`` and ``OUT/ablation.md``.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from minrnn.tasks.base import fresh_run_config, read_json, run_config, run_task
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


def _grid_folder(out_dir: str | Path) -> Path:
    """The grid's folder, created; refused if it holds an ablation.json / ablation.md that no grid
    command wrote (they would be overwritten)."""
    out = Path(out_dir)
    if out.is_dir() and any((out / n).exists() for n in ("ablation.json", "ablation.md")):
        saved = read_json(out / "ablation.json")
        if not (isinstance(saved, dict) and {"table", "runs", "metric"} <= saved.keys()):
            raise ValueError(f"{out} holds an ablation.json / ablation.md that this command did not write; "
                             f"choose another --out (they would be overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    return out


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
    if not cells or any(c not in task.MODEL_KINDS for c in cells):
        raise ValueError(f"cells must be a non-empty list of {' / '.join(task.MODEL_KINDS)}, got {cells}")
    if not layers or any(n < 1 for n in layers):
        raise ValueError(f"layers must be a non-empty list of positive depths, got {layers}")
    out = _grid_folder(out_dir)
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


# ----------------------------------------------------------------------------- offline RL


def dataset_label(data: str) -> str:
    """A short name for a dataset in run folders and tables: the file name without its suffix, or
    the Minari id with '/' as '-'."""
    return data.split(":", 1)[1].replace("/", "-") if data.startswith("minari:") else Path(data).stem


def rl_summary(runs: list[dict], datasets: list[str], kinds: list[str]) -> dict:
    """Per dataset: its own mean return (and normalised); per (dataset, kind): mean and sample std
    over seeds of the evaluation's normalised score and mean return."""
    table: dict = {}
    for data in datasets:
        label = dataset_label(data)
        mine = [r for r in runs if r["dataset"] == label]
        row: dict = {
            "dataset": label,
            "data_return": mine[0].get("data_return") if mine else None,
            "data_normalized": mine[0].get("data_normalized") if mine else None,
            "models": {},
        }
        for kind in kinds:
            done = [r for r in mine if r["kind"] == kind and "eval_return" in r]
            scores = [r["eval_normalized"] for r in done if r.get("eval_normalized") is not None]
            returns = [r["eval_return"] for r in done]
            row["models"][kind] = {
                "n": len(done),
                "normalized_mean": statistics.fmean(scores) if scores else None,
                "normalized_std": statistics.stdev(scores) if len(scores) > 1 else None,
                "return_mean": statistics.fmean(returns) if returns else None,
                "return_std": statistics.stdev(returns) if len(returns) > 1 else None,
                "normalized": scores,
                "returns": returns,
            }
        table[label] = row
    return table


def _mean_std(mean: float | None, std: float | None, n: int, digits: int = 1) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={n})" if std is not None else f"{mean:.{digits}f} (n={n})"


def rl_markdown(table: dict, kinds: list[str], title: str) -> str:
    """Rows = datasets; the dataset's own mean return, then each model's normalised score and mean
    return (mean ± sample std over seeds)."""
    lines = [
        f"### {title}",
        "",
        "Normalised score (0 = random policy, 100 = expert), mean ± std over seeds:",
        "",
        "| dataset | dataset's mean return (normalised) | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for row in table.values():
        own = "–" if row["data_return"] is None else f"{row['data_return']:.1f}"
        if row["data_normalized"] is not None:
            own += f" ({row['data_normalized']:.1f})"
        cells = [_mean_std(row["models"][k]["normalized_mean"], row["models"][k]["normalized_std"], row["models"][k]["n"]) for k in kinds]
        lines.append(f"| {row['dataset']} | {own} | " + " | ".join(cells) + " |")
    lines += ["", "Mean episode return of the evaluation, mean ± std over seeds:", "", "| dataset | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for row in table.values():
        cells = [_mean_std(row["models"][k]["return_mean"], row["models"][k]["return_std"], row["models"][k]["n"]) for k in kinds]
        lines.append(f"| {row['dataset']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_rl_benchmark(
    task: ModuleType,
    preset: str,
    datasets: list[str],
    kinds: list[str],
    n_seeds: int,
    settings: dict,
    out_dir: str | Path,
) -> dict:
    """Train and evaluate every model kind on every dataset for seeds ``seed + 0 .. n_seeds - 1``
    (``settings``: the user's model, training and task settings, as `minrnn train rl` takes them;
    the preset must evaluate after training: ``eval_episodes`` > 0). Prints and saves the table;
    returns the JSON payload."""
    if n_seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {n_seeds}")
    if not datasets or not kinds:
        raise ValueError("at least one dataset and one model kind are needed")
    bad = [k for k in kinds if k not in task.MODEL_KINDS]
    if bad:
        raise ValueError(f"unknown model kind(s) {bad}; choose from {list(task.MODEL_KINDS)}")
    out = _grid_folder(out_dir)
    seed0 = settings.get("seed", TrainConfig.seed)
    runs: list[dict] = []
    payload: dict = {}
    title = f"offline RL, preset {preset}"
    for i in range(n_seeds):
        for data in datasets:
            for kind in kinds:
                seed = seed0 + i
                config = fresh_run_config(task, "rl", preset, {**settings, "data": data, "seed": seed}, kind)
                if config["task_config"]["eval_episodes"] < 1:
                    raise ValueError("the benchmark evaluates after training: pass --eval-episodes N (N >= 1)")
                run_dir = out / f"{dataset_label(data)}-{kind}-s{seed}"
                print(f"== {run_dir.name}", flush=True)
                result = run_task(task, config, run_dir, reuse=True)
                runs.append({"dataset": dataset_label(data), "data": data, "kind": kind, "seed": seed, "dir": run_dir.name, **result})
                payload = {
                    "task": "rl",
                    "preset": preset,
                    "metric": "eval_normalized",
                    "datasets": datasets,
                    "kinds": kinds,
                    "settings": settings,
                    "train": config["train"],
                    "task_config": {k: v for k, v in config["task_config"].items() if k != "data"},
                    "table": rl_summary(runs, datasets, kinds),
                    "runs": runs,
                }
                (out / "ablation.json").write_text(json.dumps(payload, indent=2) + "\n")
                (out / "ablation.md").write_text(rl_markdown(payload["table"], kinds, title))
    print(rl_markdown(payload["table"], kinds, title))
    return payload
