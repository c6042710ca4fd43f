"""Trained models from run folders: the weights of a run's best (or latest) checkpoint, rebuilt
into their model class with the config the run saved."""

from __future__ import annotations

from pathlib import Path

import torch

from minrnn.models import build_model
from minrnn.train.checkpoint import BEST, CHECKPOINT, load_checkpoint, load_weights


def load_run(path: str | Path, which: str = "best") -> tuple[torch.nn.Module, dict, Path]:
    """(model in eval mode on the CPU, checkpoint payload, file read) of a run folder written by
    `minrnn train`, or of one of its checkpoint files.

    ``which`` picks a run folder's ``best`` checkpoint (lowest validation loss; the latest if no
    validation has run yet) or its ``latest``. Weights that are not finite are a ValueError.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    path = Path(path)
    if path.is_dir():
        path = path / BEST if which == "best" and (path / BEST).exists() else path / CHECKPOINT
    ckpt = load_checkpoint(path)
    config = ckpt.get("config")
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"{path} holds no model config; it was not written by `minrnn train`")
    model = build_model(config.get("arch", "minrnn"), config["model"])
    load_weights(model, ckpt, path)
    bad = [name for name, p in model.state_dict().items() if p.is_floating_point() and not bool(p.isfinite().all())]
    if bad:
        raise ValueError(f"{path} holds weights that are not finite (NaN/Inf, e.g. {bad[0]}): the run diverged; "
                         f"train it again (a lower learning rate) or load another checkpoint of it")
    return model.eval(), ckpt, path
