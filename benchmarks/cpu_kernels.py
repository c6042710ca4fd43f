"""Measurements behind the fused CPU kernels' design (benchmarks/NOTES-cpu.md).

    PYTHONPATH=src nice -n 10 python benchmarks/cpu_kernels.py --part scan --threads 1 2
    PYTHONPATH=src nice -n 10 python benchmarks/cpu_kernels.py --part layer --threads 1 2
    PYTHONPATH=src nice -n 10 python benchmarks/cpu_kernels.py --part memory
    PYTHONPATH=src nice -n 10 python benchmarks/cpu_kernels.py --part design
    PYTHONPATH=src nice -n 10 python benchmarks/cpu_kernels.py --part error
    PYTHONPATH=src nice -n 10 python benchmarks/cpu_kernels.py --part compile
    PYTHONPATH=src nice -n 10 python benchmarks/cpu_kernels.py --part threading --threads 1 2
    PYTHONPATH=src python benchmarks/cpu_kernels.py --part asm
    PYTHONPATH=src python benchmarks/cpu_kernels.py --part breakdown --layer-T 256

Every figure is a median over --repeats runs after one warm-up, all variants of a table measured
in the same process, side by side (run order interleaved). The full benchmark is `minrnn bench
runtime`; this script only covers what the kernel design needed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

from minrnn import MinGRU, MinLSTM
from minrnn import functional as F


def timeit(fns: dict, repeats: int, warmup: bool = True) -> dict:
    """Median seconds of each callable, runs interleaved so that machine load hits all alike."""
    for fn in fns.values() if warmup else []:
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def print_table(title: str, res: dict, base: str | None = None) -> None:
    print(f"\n{title}")
    for k, v in res.items():
        ratio = f"  {v / res[base]:6.2f}x {base}" if base else ""
        print(f"  {k:40s} {v * 1e3:10.1f} ms{ratio}")


# ----------------------------------------------------------------------------- parts


def part_scan(args) -> dict:
    """Scan-only: linear_scan / min_gru / min_lstm at B=64, T=4096, H=256, forward and fwd+bwd."""
    B, T, H = args.B, args.T, args.H
    torch.manual_seed(0)
    pre2 = torch.randn(B, T, 2 * H, requires_grad=True)
    pre3 = torch.randn(B, T, 3 * H, requires_grad=True)
    x, y = pre2.chunk(2, -1)
    a = torch.sigmoid(x).detach().requires_grad_()
    b = y.detach().contiguous().requires_grad_()
    f, i, c = pre3.chunk(3, -1)
    grad = torch.randn(B, T, H)

    def fwd(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    def fwd_bwd(fn, leaves):
        def run():
            fn().backward(grad)
            for leaf in leaves:
                leaf.grad = None
        return run

    def table(backends, repeats, warmup=True):
        fns = {}
        for be in backends:
            fns[f"linear_scan fwd [{be}]"] = fwd(lambda be=be: F.linear_scan(a, b, backend=be))
            fns[f"linear_scan fwd+bwd [{be}]"] = fwd_bwd(lambda be=be: F.linear_scan(a, b, backend=be), [a, b])
            fns[f"min_gru fwd [{be}]"] = fwd(lambda be=be: F.min_gru(x, y, backend=be))
            fns[f"min_gru fwd+bwd [{be}]"] = fwd_bwd(lambda be=be: F.min_gru(x, y, backend=be), [pre2])
            fns[f"min_lstm fwd [{be}]"] = fwd(lambda be=be: F.min_lstm(f, i, c, backend=be))
            fns[f"min_lstm fwd+bwd [{be}]"] = fwd_bwd(lambda be=be: F.min_lstm(f, i, c, backend=be), [pre3])
        return timeit(fns, repeats, warmup)

    res = table(["cpu", "torch"], args.repeats)
    if args.log:  # about 100x slower: one run each, no warm-up (nothing to compile)
        res.update(table(["log"], 1, warmup=False))
    print(f"\nscan only (min_gru / min_lstm inputs: chunks of one tensor), B={B} T={T} H={H}")
    for op in ["linear_scan fwd", "linear_scan fwd+bwd", "min_gru fwd", "min_gru fwd+bwd", "min_lstm fwd", "min_lstm fwd+bwd"]:
        cpu = res[f"{op} [cpu]"]
        cells = "".join(f"  {be} {res[f'{op} [{be}]'] * 1e3:9.1f} ms ({res[f'{op} [{be}]'] / cpu:6.1f}x)"
                        for be in ["torch", "log"] if f"{op} [{be}]" in res)  # fmt: skip
        print(f"  {op:20s} cpu {cpu * 1e3:8.1f} ms{cells}")
    return res


def part_layer(args) -> dict:
    """Training step (forward + sum loss + backward) of one layer, B=64, d=256, T=1024."""
    B, T, d = args.B, args.layer_T, args.d
    x = torch.randn(B, T, d, requires_grad=True)
    models = {
        "MinGRU": MinGRU(d, d, batch_first=True),
        "Linear(d, 2d) alone": nn.Linear(d, 2 * d),
        "nn.GRU": nn.GRU(d, d, batch_first=True),
        "MinLSTM": MinLSTM(d, d, batch_first=True),
        "Linear(d, 3d) alone": nn.Linear(d, 3 * d),
        "nn.LSTM": nn.LSTM(d, d, batch_first=True),
    }

    def step(m):
        def run():
            y = m(x)
            y = y[0] if isinstance(y, tuple) else y
            y.sum().backward()
            x.grad = None
            m.zero_grad(set_to_none=True)
        return run

    res = timeit({k: step(m) for k, m in models.items()}, args.repeats)
    print_table(f"layer training step B={B} T={T} d={d}", {k: res[k] for k in list(res)[:3]}, base="MinGRU")
    print_table("", {k: res[k] for k in list(res)[3:]}, base="MinLSTM")
    return res


_MEMORY_CHILD = r"""
import resource, sys, torch
from torch import nn
from minrnn import MinGRU, MinLSTM
torch.set_num_threads(1)
name, B, T, d = sys.argv[1], *map(int, sys.argv[2:5])
make = {"MinGRU": lambda: MinGRU(d, d, batch_first=True), "MinLSTM": lambda: MinLSTM(d, d, batch_first=True),
        "nn.GRU": lambda: nn.GRU(d, d, batch_first=True), "nn.LSTM": lambda: nn.LSTM(d, d, batch_first=True),
        "Linear(d, 2d)": lambda: nn.Linear(d, 2 * d), "Linear(d, 3d)": lambda: nn.Linear(d, 3 * d)}[name]
m = make()
for _ in range(2):  # warm up on a tiny input: kernels loaded / compiled, allocator initialized
    y = m(torch.randn(2, 3, d)); (y[0] if isinstance(y, tuple) else y).sum().backward()
x = torch.randn(B, T, d, requires_grad=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y = m(x); (y[0] if isinstance(y, tuple) else y).sum().backward()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024 / (B * T * d * 4))
"""


def part_memory(args) -> dict:
    """Peak extra RSS of one training step, in float32 values per input element B*T*d (fresh process each)."""
    B, T, d = args.B, args.layer_T, args.d
    res = {}
    for name in ["MinGRU", "nn.GRU", "Linear(d, 2d)", "MinLSTM", "nn.LSTM", "Linear(d, 3d)"]:
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, name, str(B), str(T), str(d)],
            capture_output=True, text=True, check=True, env=os.environ,
        )  # fmt: skip
        res[name] = float(out.stdout.strip().splitlines()[-1])
    print(f"\npeak extra memory of one training step, floats per input element (B={B} T={T} d={d}, 1 thread)")
    for k, v in res.items():
        print(f"  {k:20s} {v:6.2f}")
    return res


def part_design(args) -> dict:
    """Design choices: libm exp vs our vectorizable exp; strided views read in place vs copied."""
    import numba
    import numpy as np

    from minrnn.ops import scan_cpu as K

    one = np.float32(1.0)

    def make_kernel(exp):
        @numba.njit(parallel=True, fastmath={"contract"})
        def sigmoid_sum(x, out, B, T, H):  # the minGRU gate math on one input, stored
            for b in numba.prange(B):
                for t in range(T):
                    row = x[(b * T + t) * H : (b * T + t + 1) * H]
                    o = out[(b * T + t) * H : (b * T + t + 1) * H]
                    for k in range(H):
                        e = exp(-abs(row[k]))
                        o[k] = one / (one + e)

        return sigmoid_sum

    B, T, H = args.B, args.T, args.H
    x = torch.randn(B * T * H).numpy()
    out = np.empty_like(x)
    k_libm, k_ours = make_kernel(np.exp), make_kernel(K._exp32)
    res = timeit(
        {
            "sigmoid pass, numba np.exp (libm)": lambda: k_libm(x, out, B, T, H),
            "sigmoid pass, _exp32": lambda: k_ours(x, out, B, T, H),
            "torch.sigmoid (reference pass)": lambda: torch.sigmoid(torch.from_numpy(x)),
        },
        args.repeats,
    )
    print_table(f"exp choice, one elementwise pass over B*T*H = {B * T * H:,} float32", res)
    pre = torch.randn(B, T, 2 * H)
    g, c = pre.chunk(2, -1)
    with torch.no_grad():
        res2 = timeit(
            {
                "min_gru fwd, chunk views read in place": lambda: F.min_gru(g, c, backend="cpu"),
                "min_gru fwd, .contiguous() copies first": lambda: F.min_gru(g.contiguous(), c.contiguous(), backend="cpu"),
            },
            args.repeats,
        )
    print_table(f"strided inputs, B={B} T={T} H={H}", res2)
    return {**res, **res2}


def part_error(args) -> dict:
    """float32 relative error against float64 at long T (gates ~ N(0, 1), so a ~ 0.5 on average)."""
    from minrnn.ops.activations import min_gru_coeffs, min_lstm_coeffs
    from minrnn.ops.reference import sequential_scan

    res = {}
    B, H = 4, 64
    print(f"\nfloat32 error vs float64 sequential reference, B={B} H={H}")
    for T in (4096, 65536):
        pre = torch.randn(B, T, 3 * H, dtype=torch.float64)
        f, i, c = pre.chunk(3, -1)
        h0 = torch.randn(B, H, dtype=torch.float64)
        with torch.no_grad():
            for name, run, coeffs in [
                ("min_gru", lambda be, dt: F.min_gru(f.to(dt), c.to(dt), h0.to(dt), backend=be), min_gru_coeffs(f, c)),
                ("min_lstm", lambda be, dt: F.min_lstm(f.to(dt), i.to(dt), c.to(dt), h0.to(dt), backend=be),
                 min_lstm_coeffs(f, i, c)),
            ]:  # fmt: skip
                ref = sequential_scan(*coeffs, h0)
                for be in ["cpu", "torch"] + (["log"] if args.log else []):
                    out = run(be, torch.float32).double()
                    rel = ((out - ref).abs().max() / ref.abs().max()).item()
                    res[f"{name} T={T} [{be}]"] = rel
                    print(f"  {name:9s} T={T:6d} [{be:5s}] max|h32 - h64| / max|h64| = {rel:.2e}")
    return res


_THREADING_CHILD = r"""
import statistics, sys, time, torch
from torch import nn
from minrnn import functional as F
torch.set_num_threads(int(sys.argv[1]))
x = torch.randn(64, 128, 256, requires_grad=True)
gru = nn.GRU(256, 256, batch_first=True)
def step():
    t0 = time.perf_counter(); gru(x)[0].sum().backward(); return time.perf_counter() - t0
before = statistics.median(step() for _ in range(3))
F.min_gru(x.detach(), x.detach(), backend="cpu")  # one parallel numba kernel
import numba
after = statistics.median(step() for _ in range(3))
print(numba.threading_layer(), before, after)
"""


def part_threading(args) -> dict:
    """nn.GRU step time (B=64, T=128, d=256) before and after one numba kernel ran in the process,
    per numba threading layer (fresh process each)."""
    res = {}
    print("\nnn.GRU training step before / after one numba kernel, B=64 T=128 d=256 (median of 3)")
    for n in args.threads:
        for layer in ("omp", "workqueue"):
            env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
            out = subprocess.run([sys.executable, "-c", _THREADING_CHILD, str(n)], capture_output=True, text=True,
                                 check=True, env=env)  # fmt: skip
            name, before, after = out.stdout.split()
            res[f"{layer}, {n} thread(s)"] = {"before": float(before), "after": float(after)}
            print(f"  {name:9s} {n} thread(s): {float(before):6.2f} s -> {float(after):6.2f} s")
    return res


def part_compile(args) -> dict:
    """First-call cost in a fresh process: empty numba cache (compile) vs populated cache (load)."""
    child = (
        "import time; t0 = time.perf_counter(); import torch, minrnn; from minrnn import functional as F; "
        "t1 = time.perf_counter(); "
        "x = [torch.randn(2, 3, 4, dtype=torch.{dt}, requires_grad=True) for _ in range(3)]; "
        "F.min_gru(x[0], x[1]).sum().backward(); F.min_lstm(*x).sum().backward(); "
        "F.linear_scan(x[0].sigmoid(), x[1]).sum().backward(); "
        "print(t1 - t0, time.perf_counter() - t1)"
    )
    res = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for dt in ("float32", "float64"):
            for label in ("empty cache", "warm cache"):
                out = subprocess.run([sys.executable, "-c", child.format(dt=dt)], capture_output=True, text=True,
                                     check=True, env=env)  # fmt: skip
                imp, first = map(float, out.stdout.split())
                res[f"{dt}, {label}"] = first
                print(f"  {dt}, {label:11s}: import minrnn {imp:5.2f} s, first fwd+bwd of all 3 ops {first:6.2f} s")
    return res


_ASM_CHILD = r"""
import json, re, torch
from minrnn.ops import scan_cpu as K
B, T, H = 2, 3, 64
pre = torch.randn(B, T, 3 * H, requires_grad=True)
f, i, c = pre.chunk(3, -1)
g = torch.randn(B, T, H)
mask = torch.ones(B, T, dtype=torch.bool)
for m in (None, mask):  # compile every float32 kernel
    K.min_gru_cpu(f, c, None, m).backward(g)
    K.min_lstm_cpu(f, i, c, None, m).backward(g)
K.linear_scan_cpu(torch.rand(B, T, H, requires_grad=True), c).backward(g)
out = {}
for name in ("_scan_fwd", "_scan_bwd", "_min_gru_fwd", "_min_gru_bwd", "_min_lstm_fwd", "_min_lstm_bwd"):
    for sig, asm in getattr(K, name).inspect_asm().items():
        if "float32" in str(sig):
            out[name] = {
                "packed float ops (ymm/zmm)": len(re.findall(r"\bv\w+ps\s+[^\n]*%[yz]mm", asm)),
                "packed divisions vdivps (ymm/zmm)": len(re.findall(r"vdivps\s+[^\n]*%[yz]mm", asm)),
                "scalar divisions vdivss": len(re.findall(r"vdivss", asm)),
                "ZeroDivisionError check": "division by zero" in asm,
            }
print(json.dumps(out))
"""


def part_asm(args) -> dict:
    """Whether the float32 kernels vectorize: counts in their machine code (fresh process, empty
    numba cache: cached code cannot be inspected). A vectorized kernel has packed vdivps (its
    scalar vdivss are the remainder loop's) and no ZeroDivisionError check."""
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", _ASM_CHILD], capture_output=True, text=True, check=True,
                             env={**os.environ, "NUMBA_CACHE_DIR": cache})  # fmt: skip
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print("\nfloat32 kernels' machine code (x86-64):")
    for name, counts in res.items():
        print(f"  {name:14s} " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return res


def part_breakdown(args) -> dict:
    """Where the layer's time over its Linear goes (B=64, d=H=256, --layer-T): the packed ops with
    their output allocation, the kernels alone into preallocated buffers, and the cost of a fresh
    buffer (allocation + first touch) against refilling an existing one."""
    import numpy as np  # noqa: F401  (numba arrays)

    from minrnn.ops import scan_cpu as K

    B, T, H = args.B, args.layer_T, args.H
    torch.manual_seed(0)
    res = {}
    for n, name, fwd_k, bwd_k, op, op_bwd in (
        (2, "min_gru", K._min_gru_fwd, K._min_gru_bwd, K._min_gru_packed_op, K._min_gru_packed_backward),
        (3, "min_lstm", K._min_lstm_fwd, K._min_lstm_bwd, K._min_lstm_packed_op, K._min_lstm_packed_backward),
    ):  # fmt: skip
        pre, g = torch.randn(B, T, n * H), torch.randn(B, T, H)
        with torch.no_grad():
            h = op(pre, None, None, "g")
        cd = torch.float32
        cols, (m, has_mask), h0 = K._columns(pre, n, cd), K._mask(None), K._h0(None, B, H, cd)
        out = torch.empty(B, T, H)
        dpre, dcols = K._grad_columns(B, T, H, n, cd)
        dh0 = torch.empty(B, H)
        fns = {
            f"{name} fwd op (allocates h)": lambda: op(pre, None, None, "g"),
            f"{name} fwd kernel, preallocated h": lambda: K._launch(
                fwd_k, (*cols, h0, m, has_mask, False, out.view(-1).numpy()), B, T, H),
            f"{name} bwd op (allocates d(pre))": lambda: op_bwd(g, pre, None, None, h, "g"),
            f"{name} bwd kernel, preallocated d(pre)": lambda: K._launch(
                bwd_k, (K._strided(g, cd), *cols, h0, m, has_mask, False, K._flat(h, cd), *dcols,
                        dh0.view(-1).numpy()), B, T, H),
            f"fresh (B, T, {n}H) float32: torch.empty + fill_": lambda: torch.empty(B, T, n * H).fill_(0),
            f"(B, T, {n}H) float32 from the ops' buffer cache (scan_cpu._empty) + fill_":
                lambda: K._empty(B, T, n * H, dtype=torch.float32).fill_(0),
            f"existing (B, T, {n}H) float32: fill_": lambda: dpre.fill_(0),
        }  # fmt: skip
        res.update(timeit(fns, args.repeats))
    print_table(f"layer overhead breakdown, B={B} T={T} H={H}", res)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["scan", "layer", "memory", "design", "error", "compile", "threading", "asm", "breakdown"],
                   required=True)  # fmt: skip
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--B", type=int, default=64)
    p.add_argument("--T", type=int, default=4096, help="T of the scan-only parts")
    p.add_argument("--H", type=int, default=256)
    p.add_argument("--layer-T", type=int, default=1024, help="T of the layer parts")
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--log", action="store_true", help="include the (slow) log-space backend")
    p.add_argument("--json", help="write results here")
    args = p.parse_args()
    parts = {"scan": part_scan, "layer": part_layer, "memory": part_memory, "design": part_design,
             "error": part_error, "compile": part_compile, "threading": part_threading, "asm": part_asm,
             "breakdown": part_breakdown}  # fmt: skip
    results = {"machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__}, "results": {}}
    threaded = args.part in ("scan", "layer", "design", "breakdown")
    for n in args.threads if threaded else [torch.get_num_threads()]:
        torch.set_num_threads(n)
        if threaded:
            print(f"\n=== {n} thread(s)")
        results["results"][str(n)] = parts[args.part](args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
