"""Save, load and share models: ``model.save_pretrained(dir)`` / ``ModelClass.from_pretrained(dir)``.

A model folder holds ``config.json`` (the arch name of `minrnn.models.registry` and the model's
config) and ``model.safetensors`` (its weights), and optionally ``tokenizer.json`` (see
`minrnn.data.text`). The API follows huggingface_hub's ``ModelHubMixin`` (same method names and
main arguments), which is not used as a base class because it would make huggingface_hub a core
dependency of every model class (and of ``import minrnn``): here it is imported only to download
a hub id in `from_pretrained` or to `push_to_hub` (``pip install minrnn[hub]``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "minrnn-model"
VERSION = 1
FILES = [CONFIG_FILE, WEIGHTS_FILE, "tokenizer.json"]

T = TypeVar("T", bound="PretrainedMixin")


def arch_of(model: nn.Module) -> str:
    """The registry's arch name of ``model``'s class (ValueError if it is not registered)."""
    from minrnn.models.registry import ARCHS  # the registry imports the model classes

    for arch, (_, cls) in ARCHS.items():
        if type(model) is cls:
            return arch
    raise ValueError(f"{type(model).__name__} is not a registered model class ({[c.__name__ for _, c in ARCHS.values()]})")


def save_pretrained(model: nn.Module, save_directory: str | os.PathLike, *, tokenizer: Any = None) -> Path:
    """Write ``model`` (any registered model class) into the folder ``save_directory``:
    config.json, model.safetensors and, given a ``tokenizer``, tokenizer.json. Returns the folder."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise ValueError(f"{type(model).__name__} has no config to save (model.config.to_dict())")
    folder = Path(save_directory)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder; choose another path to save the model into")
    if (folder / CONFIG_FILE).exists() and _read_config(folder, check=False) is None:
        raise ValueError(f"{folder} holds a config.json that is not a minrnn model's; choose a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    meta = {"format": FORMAT, "version": VERSION, "arch": arch_of(model), "model": config.to_dict(),
            "dtype": str(dtypes.pop()).removeprefix("torch.") if len(dtypes) == 1 else None}
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    save_model(model, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})  # tied weights stored once
    if tokenizer is not None:
        from minrnn.data.text import save_tokenizer

        save_tokenizer(tokenizer, folder)
    return folder


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by `save_pretrained`."""
    p = Path(path)
    return p.is_dir() and (p / WEIGHTS_FILE).is_file() and _read_config(p, check=False) is not None


def _read_config(folder: Path, check: bool = True) -> dict | None:
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        if check:
            raise ValueError(f"{folder / CONFIG_FILE} is missing or not JSON ({e}); not a model folder of save_pretrained") from None
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        if check:
            raise ValueError(f"{folder / CONFIG_FILE} is not the config of a minrnn model folder (no format={FORMAT!r})")
        return None
    return meta


def download(repo_id: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
             force_download: bool = False, token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """The local folder of the Hugging Face Hub model ``repo_id`` (downloaded once, then cached)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"no folder {repo_id}; as a Hugging Face Hub id it needs huggingface_hub "
                                f"(pip install 'minrnn[hub]')") from None
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
                                      local_files_only=local_files_only, allow_patterns=FILES))
    except Exception as e:  # offline, no such repo, no access: huggingface_hub raises many kinds
        raise FileNotFoundError(f"no folder {repo_id}, and downloading it from the Hugging Face Hub failed: "
                                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def resolve(path: str | os.PathLike, **hub_kwargs) -> Path:
    """A local folder for ``path``: the path itself if it exists, else ``user/name`` downloaded
    from the Hugging Face Hub."""
    p = Path(path)
    if p.exists():
        return p
    if isinstance(path, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", path) and not path.startswith("."):
        return download(path, **hub_kwargs)
    raise FileNotFoundError(f"no model or run folder at {p}")


def load_pretrained(path: str | os.PathLike, *, map_location: str | torch.device = "cpu", expected: type | None = None,
                    **hub_kwargs) -> nn.Module:
    """The model saved in the folder (or hub id) ``path``, in eval mode; ``expected`` (a model
    class) refuses a folder holding another class."""
    from minrnn.models.registry import ARCHS, build_model

    folder = resolve(path, **hub_kwargs)
    meta = _read_config(folder)
    arch = meta.get("arch")
    if arch not in ARCHS:
        raise ValueError(f"{folder / CONFIG_FILE} names model arch {arch!r}; this version knows {list(ARCHS)}")
    cls = ARCHS[arch][1]
    if expected is not None and not issubclass(cls, expected):
        raise ValueError(f"{folder} holds a {cls.__name__}, not a {expected.__name__}; load it with "
                         f"{cls.__name__}.from_pretrained or minrnn.load")
    model = build_model(arch, meta.get("model") or {})
    if meta.get("dtype"):
        model.to(getattr(torch, meta["dtype"]))
    try:
        missing, unexpected = load_model(model, str(folder / WEIGHTS_FILE), strict=False, device=str(map_location))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"{folder / WEIGHTS_FILE} does not fit its config.json: {' '.join(str(e).split())[:300]}") from None
    if missing or unexpected:
        raise ValueError(f"{folder / WEIGHTS_FILE} does not fit its config.json: missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")
    return model.to(map_location).eval()


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for the registered model classes."""

    def save_pretrained(self, save_directory: str | os.PathLike, *, tokenizer: Any = None, push_to_hub: bool = False,
                        repo_id: str | None = None, **push_to_hub_kwargs) -> Path:
        """Write config.json and model.safetensors (and tokenizer.json, given a ``tokenizer``)
        into ``save_directory``; with ``push_to_hub=True`` upload them to ``repo_id`` too."""
        folder = save_pretrained(self, save_directory, tokenizer=tokenizer)  # type: ignore[arg-type]
        if push_to_hub:
            self.push_to_hub(repo_id or folder.name, tokenizer=tokenizer, **push_to_hub_kwargs)
        return folder

    @classmethod
    def from_pretrained(cls: type[T], pretrained_model_name_or_path: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                        revision: str | None = None, cache_dir: str | os.PathLike | None = None, force_download: bool = False,
                        token: str | bool | None = None, local_files_only: bool = False) -> T:
        """The model saved by `save_pretrained` in a local folder, or a Hugging Face Hub id
        (needs huggingface_hub), in eval mode on ``map_location``."""
        return load_pretrained(pretrained_model_name_or_path, map_location=map_location, expected=cls, revision=revision,  # type: ignore[return-value]
                               cache_dir=cache_dir, force_download=force_download, token=token, local_files_only=local_files_only)

    def push_to_hub(self, repo_id: str, *, tokenizer: Any = None, commit_message: str = "Upload minrnn model",
                    private: bool | None = None, token: str | None = None, branch: str | None = None) -> str:
        """Upload this model (and ``tokenizer``) to the Hugging Face Hub repo ``repo_id``
        (created if needed; needs huggingface_hub and a login). Returns the commit URL."""
        try:
            from huggingface_hub import HfApi
        except ImportError:
            raise ImportError("push_to_hub needs huggingface_hub (pip install 'minrnn[hub]')") from None
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            save_pretrained(self, tmp, tokenizer=tokenizer)  # type: ignore[arg-type]
            return str(api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=branch))
