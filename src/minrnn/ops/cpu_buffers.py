"""Reusable output buffers for the CPU kernels: a small caching allocator, as torch has for CUDA.

Why: every training step, the CPU ops return fresh (B, T, H)-sized tensors (h, and the gradients
wrt their inputs). A fresh large allocation comes straight from the operating system, which maps
it page by page on first touch; on our VM that costs ~0.6-0.9 ms per MB, as much as the kernels'
whole work (benchmarks/NOTES-cpu.md, "The CPU ops' buffer cache"). So the ops keep the large
buffers they returned and hand one out again once nothing else holds it: a steady training loop
maps its memory once.

How a buffer is known to be free: buffers are numpy arrays, and a tensor is made from one with
`torch.from_numpy`, whose storage holds a reference to the array until the storage dies (every view
of the tensor shares that storage). So when the array's reference count is back to what the cache
alone holds, no tensor uses its memory any more. Everything happens under one lock, so threads
never get the same buffer.

Limits: buffers below `MIN_BYTES` are not cached (glibc reuses small blocks itself); at most
`limit()` bytes of unused buffers are kept (default 2 GiB; ``MINRNN_CPU_CACHE_MIB`` sets it at
start-up, 0 turns the cache off, as does `set_limit(0)`); `empty_cache()` frees the unused ones now,
as `torch.cuda.empty_cache()` does. A tensor from the cache is an ordinary contiguous CPU tensor,
except that its storage cannot be resized (`resize_` to a larger size raises).
"""

from __future__ import annotations

import math
import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

MIN_BYTES = 4 << 20
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _limit_from_env() -> int:
    raw = os.environ.get("MINRNN_CPU_CACHE_MIB", "2048")
    try:
        mib = float(raw)
    except ValueError:
        raise ValueError(f"MINRNN_CPU_CACHE_MIB must be a number of MiB (0 turns the cache off), got {raw!r}") from None
    if mib < 0:
        raise ValueError(f"MINRNN_CPU_CACHE_MIB must be >= 0, got {raw!r}")
    # Free-threaded CPython: reference counts read from another thread are not exact; do not cache.
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return int(mib * 2**20) if gil else 0


class BufferCache:
    """Large byte buffers, handed out as tensors, and reused once no tensor holds them."""

    def __init__(self, limit_bytes: int) -> None:
        self._buffers: list[np.ndarray] = []  # every cached buffer, in use or not; newest last
        self._lock = threading.Lock()
        self._limit = limit_bytes
        # The count `_refs` reads for a buffer that only the list holds, measured on a sentinel with
        # the same code (the count an interpreter reports for an argument differs between versions).
        self._buffers.append(np.empty(0, np.uint8))
        self._unused_refs = self._refs(0)
        self._buffers.pop()

    def _refs(self, i: int) -> int:
        return sys.getrefcount(self._buffers[i])

    def _unused(self, i: int) -> bool:
        return self._refs(i) <= self._unused_refs

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """A contiguous tensor of ``shape``: a reused buffer where an unused one of its size exists."""
        np_dtype = _NUMPY_DTYPES.get(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if np_dtype is None or nbytes < MIN_BYTES or self._limit == 0:
            return torch.empty(shape, dtype=dtype)
        with self._lock:
            i = next((i for i in range(len(self._buffers)) if self._buffers[i].nbytes == nbytes and self._unused(i)), None)
            buf = self._buffers.pop(i) if i is not None else np.empty(nbytes, np.uint8)
            self._buffers.append(buf)  # newest last: trimming drops the longest unused first
            t = torch.from_numpy(buf.view(np_dtype).reshape(shape))
            del buf
            self._trim(self._limit)
        return t

    def _trim(self, keep_bytes: int) -> None:
        """Drop unused buffers, oldest first, until the unused ones hold at most ``keep_bytes``."""
        unused = [i for i in range(len(self._buffers)) if self._unused(i)]
        total = sum(self._buffers[i].nbytes for i in unused)
        drop = set()
        for i in unused:
            if total <= keep_bytes:
                break
            total -= self._buffers[i].nbytes
            drop.add(i)
        if drop:
            self._buffers = [self._buffers[i] for i in range(len(self._buffers)) if i not in drop]

    def empty_cache(self) -> None:
        with self._lock:
            self._trim(0)

    def cached_bytes(self) -> tuple[int, int]:
        """(bytes in buffers some tensor still uses, bytes in unused buffers)."""
        with self._lock:
            sizes = [(self._unused(i), self._buffers[i].nbytes) for i in range(len(self._buffers))]
        return sum(n for free, n in sizes if not free), sum(n for free, n in sizes if free)

    def set_limit(self, limit_bytes: int) -> None:
        if limit_bytes < 0:
            raise ValueError(f"limit_bytes must be >= 0, got {limit_bytes}")
        with self._lock:
            self._limit = limit_bytes
            self._trim(limit_bytes)


_cache = BufferCache(_limit_from_env())


def _after_fork_in_child() -> None:
    # A forked child (e.g. a DataLoader worker) gets a fresh lock, in case another thread of the
    # parent held it at the fork, and lets go of the parent's unused buffers (its tensors keep theirs).
    global _cache
    _cache = BufferCache(_cache._limit)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A contiguous CPU tensor of ``shape`` and ``dtype``, from the cache when it is large."""
    return _cache.empty(shape, dtype)


def empty_cache() -> None:
    """Free every cached buffer that no tensor uses (as `torch.cuda.empty_cache`)."""
    _cache.empty_cache()


def cached_bytes() -> tuple[int, int]:
    """(bytes of cached buffers in use by some tensor, bytes of unused cached buffers)."""
    return _cache.cached_bytes()


def limit() -> int:
    """The most bytes of unused buffers the cache keeps (0: the cache is off)."""
    return _cache._limit


def set_limit(limit_bytes: int) -> None:
    """Keep at most ``limit_bytes`` of unused buffers (0 turns the cache off); frees the excess now."""
    _cache.set_limit(limit_bytes)


@contextmanager
def disabled() -> Iterator[None]:
    """Inside the block the ops get plain `torch.empty` tensors, and the unused buffers are freed:
    e.g. while torch.profiler counts a step's memory (it sees torch's allocator, not numpy's)."""
    before = limit()
    set_limit(0)
    try:
        yield
    finally:
        set_limit(before)
