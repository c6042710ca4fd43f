"""Multi-process training with DDP, started by torchrun.

``torchrun --nproc_per_node N -m minrnn train ...`` sets RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT in each process; `init_distributed` reads them (the ``env://``
rendezvous, which is also how torchrun runs across nodes) and joins the process group: NCCL when
CUDA is available, gloo on CPU. Without those variables everything runs as a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only this process logs, evaluates and writes checkpoints."""
        return self.rank == 0


def dist_info() -> DistInfo:
    """The current process's place in the process group (single process if none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size())
    return DistInfo()


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group if launched by torchrun (WORLD_SIZE set), else do nothing.

    On CUDA each process uses GPU LOCAL_RANK. Returns the process's DistInfo.
    """
    if "WORLD_SIZE" not in os.environ or (dist.is_available() and dist.is_initialized()):
        return dist_info()
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda") or device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist_info()


def on_main_then_broadcast(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 alone and hand its result (or its ValueError / OSError, such as
    FileNotFoundError) to every process, e.g. to read a checkpoint that only rank 0's disk holds."""
    info = dist_info()
    if info.world_size == 1:
        return fn()
    box: list = [None]
    if info.is_main:
        try:
            box[0] = ("ok", fn())
        except (ValueError, OSError) as e:
            box[0] = ("error", e)
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise value
    return value


def close_distributed() -> None:
    """Leave the process group once every process is done: rank 0 still evaluates, saves and
    plots after the last step, and a peer that left early would break its connections."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
