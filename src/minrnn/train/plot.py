"""Loss curve of a run (train and validation loss against step) as a PNG."""

from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file such as metrics.jsonl; [] if it does not exist. A line cut
    by a crash is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def pyplot(what: str):
    """matplotlib.pyplot drawing to files, or None (with a note that ``what`` is skipped) when
    matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: {what} skipped: matplotlib is not installed (pip install 'minrnn[plot]')")
        return None
    return plt


def plot_metrics(metrics_path: str | Path, png_path: str | Path) -> Path | None:
    """Draw metrics.jsonl's train_loss and val_loss into png_path; returns the path, or None
    (with a note) when matplotlib is not installed."""
    plt = pyplot("loss-curve PNG")
    if plt is None:
        return None
    records = read_jsonl(metrics_path)
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), lw=0.8, alpha=0.7, label="train")
    if val:
        ax.plot(*zip(*val), lw=1.5, marker=".", label=f"val (best {min(v for _, v in val):.4f})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)
