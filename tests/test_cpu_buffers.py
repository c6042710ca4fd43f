"""The CPU ops' buffer cache (minrnn.ops.cpu_buffers): a buffer is handed out again only once no
tensor holds it, results stay exact when buffers are reused, and the limit is kept."""

from __future__ import annotations

import os
import threading

import pytest
import torch

import minrnn.functional as F
from minrnn.ops import cpu_buffers
from minrnn.ops.cpu_buffers import MIN_BYTES, BufferCache

SHAPE = (4, MIN_BYTES // (4 * 4 * 64), 64)  # float32: exactly MIN_BYTES, the smallest cached size


def test_a_buffer_in_use_is_never_handed_out_again():
    cache = BufferCache(limit_bytes=1 << 30)
    a = cache.empty(SHAPE, torch.float32)
    view = a[1:].view(-1)  # a view keeps the storage (and so the buffer) alive
    b = cache.empty(SHAPE, torch.float32)
    assert a.data_ptr() != b.data_ptr()
    del a
    c = cache.empty(SHAPE, torch.float32)
    assert c.data_ptr() not in (view.data_ptr() - view.storage_offset() * 4, b.data_ptr())
    storage_ptr = view.untyped_storage().data_ptr()
    del view
    d = cache.empty(SHAPE, torch.float32)  # now the first buffer is free: reused
    assert d.data_ptr() == storage_ptr
    assert cache.cached_bytes() == (3 * MIN_BYTES, 0)


def test_reuse_needs_the_same_size_and_a_cacheable_dtype():
    cache = BufferCache(limit_bytes=1 << 30)
    ptr = cache.empty(SHAPE, torch.float32).data_ptr()
    assert cache.empty((2, *SHAPE[1:]), torch.float64).data_ptr() == ptr  # same bytes, as float64
    assert cache.empty((SHAPE[0] + 1, *SHAPE[1:]), torch.float32).data_ptr() != ptr
    small = cache.empty((3, 5), torch.float32)
    half = cache.empty(SHAPE, torch.bfloat16)  # no numpy dtype: a plain torch.empty
    assert small.shape == (3, 5) and half.dtype == torch.bfloat16 and half.shape == SHAPE
    used, unused = cache.cached_bytes()
    assert used == 0 and unused == MIN_BYTES + (SHAPE[0] + 1) * MIN_BYTES // SHAPE[0]


def test_limit_bounds_the_unused_bytes_and_zero_turns_the_cache_off():
    cache = BufferCache(limit_bytes=2 * MIN_BYTES)
    bufs = [cache.empty(SHAPE, torch.float32) for _ in range(4)]
    assert cache.cached_bytes() == (4 * MIN_BYTES, 0)
    del bufs
    cache.empty((1,), torch.float32)  # small: neither cached nor trimming
    assert cache.cached_bytes() == (0, 4 * MIN_BYTES)
    kept = cache.empty(SHAPE, torch.float32)  # reuses one, then trims the unused to the limit
    assert cache.cached_bytes() == (MIN_BYTES, 2 * MIN_BYTES)
    cache.empty_cache()
    assert cache.cached_bytes() == (MIN_BYTES, 0)
    cache.set_limit(0)
    del kept
    assert cache.empty(SHAPE, torch.float32).numel() * 4 == MIN_BYTES
    assert cache.cached_bytes() == (0, MIN_BYTES)  # off: hands out fresh tensors, caches nothing new
    cache.empty_cache()
    assert cache.cached_bytes() == (0, 0)
    with pytest.raises(ValueError, match="limit_bytes must be >= 0"):
        cache.set_limit(-1)


def test_disabled_hands_out_plain_tensors_and_restores_the_limit():
    before = cpu_buffers.limit()
    with cpu_buffers.disabled():
        assert cpu_buffers.limit() == 0
        used, unused = cpu_buffers.cached_bytes()
        t = cpu_buffers.empty(SHAPE, torch.float32)
        assert cpu_buffers.cached_bytes() == (used, 0) and t.shape == SHAPE
    assert cpu_buffers.limit() == before


def test_env_var_is_checked(monkeypatch):
    monkeypatch.setenv("MINRNN_CPU_CACHE_MIB", "lots")
    with pytest.raises(ValueError, match="MINRNN_CPU_CACHE_MIB must be a number of MiB"):
        cpu_buffers._limit_from_env()
    monkeypatch.setenv("MINRNN_CPU_CACHE_MIB", "0")
    assert cpu_buffers._limit_from_env() == 0
    monkeypatch.setenv("MINRNN_CPU_CACHE_MIB", "1.5")
    assert cpu_buffers._limit_from_env() == 3 << 19


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_an_empty_cache_of_its_own():
    held = cpu_buffers.empty(SHAPE, torch.float32)  # noqa: F841  (in use in the parent)
    parent = cpu_buffers._cache
    pid = os.fork()
    if pid == 0:  # the child: a new cache (and lock), which works
        try:  # no torch compute here: torch's OpenMP pool is not usable after a fork
            fresh = cpu_buffers._cache is not parent and cpu_buffers.cached_bytes() == (0, 0)
            t = cpu_buffers.empty(SHAPE, torch.float32)
            t.numpy().fill(2.0)
            os._exit(0 if fresh and cpu_buffers.cached_bytes() == (MIN_BYTES, 0) and float(t[0, 0, 0]) == 2.0 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cpu_buffers._cache is parent


def test_threads_never_share_a_buffer():
    cache = BufferCache(limit_bytes=1 << 30)
    seen, errors = [], []

    def work(k: int) -> None:
        for _ in range(20):
            t = cache.empty(SHAPE, torch.float32)
            t.fill_(k)
            seen.append(t.data_ptr())
            if not bool((t == k).all()):
                errors.append(k)
            del t

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert cache.cached_bytes()[0] == 0 and cache.cached_bytes()[1] <= 4 * MIN_BYTES


@pytest.mark.parametrize("op", ["min_gru", "min_lstm"])
def test_training_steps_with_reused_buffers_equal_the_reference(op):
    # Several steps in a row, with the previous step's outputs dropped or kept: each step's output
    # and gradient equal the pure-PyTorch path, so a reused buffer never carries stale values.
    n = 2 if op == "min_gru" else 3
    packed = getattr(F, op + "_packed")
    B, T, H = 4, MIN_BYTES // (4 * 4 * 256) + 6, 256  # h alone is above MIN_BYTES
    kept, ptrs = [], []
    for step in range(4):
        pre = torch.randn(B, T, n * H, dtype=torch.float64 if step == 3 else torch.float32, requires_grad=True)
        h0 = torch.randn(B, H, dtype=pre.dtype)
        out = packed(pre, h0, backend="cpu")
        ref = packed(pre, h0, backend="torch")
        g = torch.randn_like(out)
        (d_cpu,) = torch.autograd.grad(out, pre, g)
        (d_ref,) = torch.autograd.grad(ref, pre, g)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(d_cpu, d_ref, rtol=1e-4, atol=1e-5)
        ptrs.append(out.data_ptr())
        if step % 2:
            kept.append((out.detach(), out.detach().clone(), d_cpu, d_cpu.clone()))
    for out, out_copy, d, d_copy in kept:  # outputs kept by the user were never overwritten
        assert torch.equal(out, out_copy) and torch.equal(d, d_copy)
    assert ptrs[2] == ptrs[0]  # step 0's h was dropped: step 2 reused its buffer


def test_retain_graph_backward_twice_with_the_cache():
    # Saved tensors (pre, h) stay held by the graph, so a second backward reads them intact.
    B, T, H = 4, MIN_BYTES // (4 * 4 * 256) + 6, 256
    pre = torch.randn(B, T, 2 * H, requires_grad=True)
    out = F.min_gru_packed(pre, backend="cpu")
    g = torch.randn_like(out)
    (first,) = torch.autograd.grad(out, pre, g, retain_graph=True)
    F.min_gru_packed(torch.randn_like(pre), backend="cpu")  # another op in between, its output dropped
    (second,) = torch.autograd.grad(out, pre, g)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
