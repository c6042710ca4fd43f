"""Checkpoints as safetensors files, written atomically.

A run folder holds two of them:

    ckpt.safetensors   the latest training state: weights, optimizer, RNG, step, config, ...
    best.safetensors   the weights with the lowest validation loss so far (plus config, step)

Each file is plain safetensors: every tensor (weights under ``model.``, optimizer moments under
``optimizer.``, RNG states under ``rng.``) is a named tensor, and everything else (config, step,
tokenizer, optimizer hyper-parameters) is JSON in the header's metadata, where a tensor appears as
the placeholder ``{"__tensor__": name}``. One file holds the whole state, so replacing it with
`os.replace` is atomic: a crash (even kill -9) leaves either the old or the new checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

CHECKPOINT = "ckpt.safetensors"
BEST = "best.safetensors"
FORMAT = "minrnn-checkpoint"
VERSION = 1


def _pack(obj: Any, name: str, tensors: dict[str, Tensor]) -> Any:
    """Replace every tensor inside obj by a placeholder and collect it in ``tensors``."""
    if isinstance(obj, Tensor):
        t = obj.detach().to("cpu").contiguous()
        # safetensors refuses tensors sharing memory (e.g. tied weights): store a copy.
        ptr = t.untyped_storage().data_ptr()
        if t.numel() > 0 and any(ptr == u.untyped_storage().data_ptr() for u in tensors.values()):
            t = t.clone()
        tensors[name] = t
        return {"__tensor__": name}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)  # configs are stored as their fields
    if isinstance(obj, dict):
        packed = {str(k): _pack(v, f"{name}.{k}" if name else str(k), tensors) for k, v in obj.items()}
        if all(isinstance(k, str) for k in obj) and "__tensor__" not in obj and "__int_keys__" not in obj:
            return packed
        # JSON keys are strings: mark dicts keyed by int (the optimizer's state is).
        if all(isinstance(k, int) and not isinstance(k, bool) for k in obj):
            return {"__int_keys__": packed}
        raise TypeError(f"checkpoint dict keys must be all str or all int, got {list(obj)} at {name!r}")
    if isinstance(obj, (list, tuple)):
        return [_pack(v, f"{name}.{i}" if name else str(i), tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {name!r} in a checkpoint")


def _unpack(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__int_keys__" in obj:
            return {int(k): _unpack(v, tensors) for k, v in obj["__int_keys__"].items()}
        return {k: _unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (nested dicts / lists of tensors and JSON values) to ``path`` atomically:
    write a temporary file in the same folder, fsync it, then rename it over the old one."""
    path = Path(path)
    tensors: dict[str, Tensor] = {}
    tree = _pack(payload, "", tensors)  # weights are named "model.embed.weight", ...
    metadata = {"format": FORMAT, "version": str(VERSION), "tree": json.dumps(tree)}
    tmp = path.with_name(f".{path.name}.tmp")  # one writer per run folder: rank 0
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it (safetensors makes it 0600)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the data is on disk before the rename makes it the checkpoint
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace the file at ``path`` by ``text`` atomically (a crash leaves the old or the new file,
    never half of one), as the checkpoints are: config.json, result.json, a trimmed metrics.jsonl."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut after it keeps the new file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not possible on every platform (Windows)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint file, or a run folder's ``ckpt.safetensors``.

    Raises FileNotFoundError if there is none, ValueError (naming the path and the problem) if
    the file is truncated, corrupt or not a minrnn checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable minrnn checkpoint (truncated, or not a safetensors file): {e}") from e
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not a minrnn checkpoint (no format={FORMAT!r} in its metadata)")
    if metadata.get("version") != str(VERSION):
        raise ValueError(f"{path} is a minrnn checkpoint of version {metadata.get('version')}, expected {VERSION}")
    try:
        payload = _unpack(json.loads(metadata["tree"]), tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is a damaged minrnn checkpoint: {e!r}") from e
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise ValueError(f"{path} is a damaged minrnn checkpoint (no model weights)")
    return payload


def load_weights(model: torch.nn.Module, payload: dict[str, Any], path: str | os.PathLike = "checkpoint") -> None:
    """Load ``payload["model"]`` into ``model``; a mismatch is a one-line ValueError naming the keys."""
    expected, got = model.state_dict(), payload["model"]
    problems = [f"missing {k}" for k in expected if k not in got] + [f"unexpected {k}" for k in got if k not in expected]
    problems += [f"{k} is {tuple(got[k].shape)} instead of {tuple(v.shape)}" for k, v in expected.items()
                 if k in got and isinstance(got[k], Tensor) and got[k].shape != v.shape]
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ValueError(f"{path} does not fit this model: {'; '.join(problems[:3])}{more}")
    try:
        model.load_state_dict(got)
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit this model: {' '.join(str(e).split())}") from e
