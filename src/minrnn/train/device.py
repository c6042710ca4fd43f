"""Which torch device a name means ("auto", "cpu", "cuda", "cuda:1"), checked against this machine."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """"auto" -> cuda if available, else cpu; a bare "cuda" means the current GPU, which under
    torchrun is GPU LOCAL_RANK (set by init_distributed).

    A name torch does not know, or a GPU this machine does not have, is a ValueError that says so.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but this machine has no usable CUDA GPU (torch {torch.__version__}); use --device cpu")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        elif device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type not in ("cpu", "mps", "xpu", "meta"):
        raise ValueError(f"device {name!r} is not supported by minrnn: use auto, cpu, cuda or cuda:N")
    return device
