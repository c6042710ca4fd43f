"""Trained models: ``minrnn.load(path) -> (model, tokenizer)`` opens a model folder (written by
``model.save_pretrained``), a run folder of `minrnn train` (its best checkpoint) or a checkpoint
file, or a Hugging Face Hub id; `load_run` reads a run's checkpoint with its payload."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from minrnn.data.text import Tokenizer, load_tokenizer, tokenizer_from_checkpoint
from minrnn.models import build_model
from minrnn.models.hub import is_model_folder, load_pretrained, resolve
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


def load(path: str | os.PathLike, *, checkpoint: str = "best", map_location: str | torch.device = "cpu",
         **hub_kwargs) -> tuple[torch.nn.Module, Tokenizer | None]:
    """(model in eval mode, tokenizer or None) of a model folder (``save_pretrained``'s), a run
    folder of `minrnn train` (its ``checkpoint``: ``best`` or ``latest``), a checkpoint file, or a
    Hugging Face Hub id (``user/name``; needs huggingface_hub, ``hub_kwargs`` go to its download).

        model, tok = minrnn.load("runs/shakespeare")
        ids = model.generate(tok.encode("ROMEO:")[None], 100, temperature=0.8, seed=0)
    """
    folder = resolve(path, **hub_kwargs)
    if is_model_folder(folder):
        return load_pretrained(folder, map_location=map_location), load_tokenizer(folder)
    if folder.is_dir() and not (folder / CHECKPOINT).exists() and not (folder / BEST).exists():
        raise FileNotFoundError(f"{folder} is neither a model folder (config.json + model.safetensors of save_pretrained) "
                                f"nor a run folder of `minrnn train` (ckpt.safetensors)")
    model, ckpt, file = load_run(folder, checkpoint)
    tokenizer = tokenizer_from_checkpoint(ckpt, str(file)) if "tokenizer" in ckpt else None
    return model.to(map_location), tokenizer
