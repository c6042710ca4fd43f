"""GPU benchmark of the Triton kernels (minrnn.ops.scan_triton), one command:

    PYTHONPATH=src python benchmarks/gpu_scan.py --out results.json

1. correctness: every kernel (linear scan, minGRU, minLSTM; fp32 and bf16) against the float64
   sequential reference on fresh random inputs, values and gradients, with h0 and a mask;
2. memory bandwidth: a large device-to-device copy;
3. the scan alone (fwd, fwd + bwd) at B=64, T in {1024, 4096, 16384}, H in {256, 512, 1024},
   fp32 and bf16, as achieved GB/s against the measured bandwidth; also the step-by-step loop
   kernel (forward), the design the chunked kernel was chosen over; and the fused minGRU /
   minLSTM ops alone at T=4096 (their gate math may make them compute-bound);
4. a training step (forward + loss + backward) of one layer, B=64, d=256, T in {64, ..., 4096}:
   MinGRU / MinLSTM (triton and torch backends) against cuDNN nn.GRU / nn.LSTM, time and peak memory.

Times are medians of `triton.testing.do_bench`. The table is printed and the results, with the
device and versions, written as JSON to --out. ``--sweep`` first times the tile configurations.
``--smoke`` runs every part on tiny shapes on the CPU under TRITON_INTERPRET=1 (times are then
meaningless): it checks that the script itself works on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="path of the JSON results file")
    p.add_argument("--smoke", action="store_true", help="tiny shapes on CPU under TRITON_INTERPRET=1 (tests the script)")
    p.add_argument("--sweep", action="store_true", help="time tile configurations first and use the fastest")
    p.add_argument("--skip-layers", action="store_true", help="scan benchmarks only")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.smoke:
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

import triton  # noqa: E402

from minrnn import MinGRU, MinLSTM  # noqa: E402
from minrnn.ops import scan_triton  # noqa: E402
from minrnn.ops.activations import min_gru_coeffs, min_lstm_coeffs  # noqa: E402
from minrnn.ops.reference import sequential_scan  # noqa: E402


# ----------------------------------------------------------------------------- timing


def bench(fn: Callable[[], object], device: str, grad_to_none=None) -> float:
    """Median time of fn in milliseconds."""
    if device == "cuda":
        return triton.testing.do_bench(fn, warmup=25, rep=200, grad_to_none=grad_to_none, return_mode="median")
    times = []  # --smoke: a plain timer, just so that the code path runs
    for _ in range(3):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def peak_memory_mib(fn: Callable[[], object], device: str) -> float | None:
    """Peak memory allocated during fn, above what was allocated before it (MiB); None on CPU."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def machine_info(device: str) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    sms=props.multi_processor_count, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


# ----------------------------------------------------------------------------- 1. correctness


def run_kernel(cell: str, xs, h0, mask):
    if cell == "linear":
        return scan_triton.linear_scan(*xs, h0)
    if cell == "gru":
        return scan_triton.min_gru(*xs, h0, mask)
    return scan_triton.min_lstm(*xs, h0, mask)


def run_reference(cell: str, xs, h0, mask):
    if cell == "linear":
        a, b = xs
    else:
        a, b = (min_gru_coeffs if cell == "gru" else min_lstm_coeffs)(*xs)
        if mask is not None:
            m = mask.unsqueeze(-1)
            a, b = torch.where(m, a, torch.ones_like(a)), torch.where(m, b, torch.zeros_like(b))
    return sequential_scan(a, b, h0)


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref).abs().max() / ref.abs().max().clamp(min=1e-30)).item()


def check_correctness(device: str, B: int, T: int, H: int) -> list[dict]:
    """Max relative error (to the reference's max) of values and every gradient."""
    rows = []
    for cell in ("linear", "gru", "lstm"):
        for dtype in (torch.float32, torch.bfloat16):
            n = 3 if cell == "lstm" else 2
            xs64 = [2 * torch.randn(B, T, H, dtype=torch.float64, device=device) for _ in range(n)]
            if cell == "linear":
                xs64[0] = torch.rand(B, T, H, dtype=torch.float64, device=device)
            h0 = -torch.rand(B, H, dtype=torch.float64, device=device)
            mask = torch.rand(B, T, device=device) > 0.2 if cell != "linear" else None
            leaves = [x.to(dtype).requires_grad_() for x in [*xs64, h0]]
            leaves_ref = [x.detach().double().requires_grad_() for x in leaves]  # same rounded inputs
            out = run_kernel(cell, leaves[:n], leaves[n], mask)
            ref = run_reference(cell, leaves_ref[:n], leaves_ref[n], mask)
            grad = torch.randn_like(ref)
            grads = torch.autograd.grad(out, leaves, grad.to(dtype))
            grads_ref = torch.autograd.grad(ref, leaves_ref, grad)
            errs = [rel_err(out, ref)] + [rel_err(g, r) for g, r in zip(grads, grads_ref)]
            tol = 1e-5 if dtype == torch.float32 else 2e-2
            rows.append({"cell": cell, "dtype": str(dtype).split(".")[-1], "B": B, "T": T, "H": H,
                         "value_rel_err": errs[0], "grad_rel_err": max(errs[1:]), "tol": tol,
                         "ok": max(errs) <= tol and bool(torch.isfinite(out).all())})
    print(f"\n== correctness vs float64 sequential reference (B={B}, T={T}, H={H}, h0 < 0, mask)")
    print(f"{'cell':8}{'dtype':10}{'value err':>12}{'grad err':>12}{'tol':>9}  ok")
    for r in rows:
        print(f"{r['cell']:8}{r['dtype']:10}{r['value_rel_err']:12.2e}{r['grad_rel_err']:12.2e}{r['tol']:9.0e}  {r['ok']}")
    return rows


# ----------------------------------------------------------------------------- 2. bandwidth


def measure_bandwidth(device: str, n_bytes: int) -> float:
    """GB/s of a device-to-device copy (read + write)."""
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = bench(lambda: dst.copy_(src), device)
    gbs = 2 * n_bytes / (ms * 1e-3) / 1e9
    print(f"\n== memory bandwidth: copy of {n_bytes / 2**30:.2f} GiB: {ms:.3f} ms, {gbs:.0f} GB/s")
    return gbs


# ----------------------------------------------------------------------------- 3. the scan alone

# Bytes each pass moves, in elements of the input dtype per (b, t, h): fwd reads a, b and writes h;
# bwd reads grad_h, a (a_{t+1}; a_t hits cache) and h (h_{t-1}) and writes grad_a, grad_b.
FWD_ELEMS, BWD_ELEMS = 3, 5


def scan_inputs(B, T, H, dtype, device, requires_grad=False):
    a = torch.rand(B, T, H, device=device, dtype=dtype).mul_(0.5).add_(0.5).requires_grad_(requires_grad)
    b = torch.randn(B, T, H, device=device, dtype=dtype).requires_grad_(requires_grad)
    return a, b


def bench_scan(device: str, B: int, Ts, Hs, bandwidth: float) -> list[dict]:
    rows = []
    print(f"\n== linear scan alone, B={B} (GB/s achieved; % of the measured {bandwidth:.0f} GB/s)")
    print(f"{'dtype':10}{'T':>7}{'H':>6}{'fwd ms':>9}{'GB/s':>7}{'%':>5}{'f+b ms':>9}{'GB/s':>7}{'%':>5}{'loop fwd ms':>13}")
    for dtype in (torch.float32, torch.bfloat16):
        for T in Ts:
            for H in Hs:
                a, b = scan_inputs(B, T, H, dtype, device, requires_grad=True)
                grad = torch.randn_like(b)
                elems, size = B * T * H, b.element_size()
                fwd = bench(lambda: scan_triton.linear_scan(a, b), device)

                def fwd_bwd():
                    torch.autograd.backward(scan_triton.linear_scan(a, b), grad)

                fb = bench(fwd_bwd, device, grad_to_none=[a, b])
                loop = bench(lambda: scan_triton.linear_scan_loop_forward(a.detach(), b.detach()), device)
                gbs_f = FWD_ELEMS * elems * size / (fwd * 1e-3) / 1e9
                gbs_fb = (FWD_ELEMS + BWD_ELEMS) * elems * size / (fb * 1e-3) / 1e9
                row = {"dtype": str(dtype).split(".")[-1], "B": B, "T": T, "H": H, "fwd_ms": fwd, "fwd_GBps": gbs_f,
                       "fwd_frac_bw": gbs_f / bandwidth, "fwd_bwd_ms": fb, "fwd_bwd_GBps": gbs_fb,
                       "fwd_bwd_frac_bw": gbs_fb / bandwidth, "loop_fwd_ms": loop}
                rows.append(row)
                print(f"{row['dtype']:10}{T:7}{H:6}{fwd:9.3f}{gbs_f:7.0f}{100 * gbs_f / bandwidth:5.0f}"
                      f"{fb:9.3f}{gbs_fb:7.0f}{100 * gbs_fb / bandwidth:5.0f}{loop:13.3f}")
                del a, b, grad
                if device == "cuda":
                    torch.cuda.empty_cache()
    return rows


# Fused cells, elements moved per (b, t, h): fwd reads the n pre-activations and writes h; bwd reads
# grad_h, the n pre-activations (rows t and t+1, the second from cache) and h, and writes n grads.
CELL_ELEMS = {"gru": (3, 6), "lstm": (4, 8)}


def bench_cells(device: str, B: int, T: int, Hs, bandwidth: float) -> list[dict]:
    """The fused minGRU / minLSTM ops alone (pre-activations in, h out): are they bandwidth-bound?"""
    rows = []
    print(f"\n== fused cells alone, B={B}, T={T} (GB/s achieved; % of the measured {bandwidth:.0f} GB/s)")
    print(f"{'cell':6}{'dtype':10}{'H':>6}{'fwd ms':>9}{'GB/s':>7}{'%':>5}{'f+b ms':>9}{'GB/s':>7}{'%':>5}")
    for cell, (n_fwd, n_bwd) in CELL_ELEMS.items():
        op = scan_triton.min_gru if cell == "gru" else scan_triton.min_lstm
        for dtype in (torch.float32, torch.bfloat16):
            for H in Hs:
                xs = [torch.randn(B, T, H, device=device, dtype=dtype, requires_grad=True) for _ in range(n_fwd - 1)]
                grad = torch.randn(B, T, H, device=device, dtype=dtype)
                nbytes = B * T * H * grad.element_size()
                fwd = bench(lambda: op(*xs), device)
                fb = bench(lambda: torch.autograd.backward(op(*xs), grad), device, grad_to_none=xs)
                gbs_f, gbs_fb = n_fwd * nbytes / (fwd * 1e-3) / 1e9, (n_fwd + n_bwd) * nbytes / (fb * 1e-3) / 1e9
                row = {"cell": cell, "dtype": str(dtype).split(".")[-1], "B": B, "T": T, "H": H, "fwd_ms": fwd,
                       "fwd_GBps": gbs_f, "fwd_frac_bw": gbs_f / bandwidth, "fwd_bwd_ms": fb, "fwd_bwd_GBps": gbs_fb,
                       "fwd_bwd_frac_bw": gbs_fb / bandwidth}
                rows.append(row)
                print(f"{cell:6}{row['dtype']:10}{H:6}{fwd:9.3f}{gbs_f:7.0f}{100 * gbs_f / bandwidth:5.0f}"
                      f"{fb:9.3f}{gbs_fb:7.0f}{100 * gbs_fb / bandwidth:5.0f}")
                del xs, grad
    return rows


def sweep_configs(device: str, B: int, T: int, H: int) -> dict:
    """Time forward + backward of minGRU (bf16) for each tile configuration; set the fastest."""
    gate, cand = scan_inputs(B, T, H, torch.bfloat16, device, requires_grad=True)
    grad = torch.randn_like(cand)
    results = []
    print(f"\n== tile sweep: minGRU fwd+bwd, bf16, B={B}, T={T}, H={H}")
    # (BLOCK_T, BLOCK_H, num_warps): 4 to 16 elements per thread (16 spills in the minLSTM backward,
    # see benchmarks/triton_resources.py), times num_stages (software pipelining of the loads).
    tiles = [(16, 32, 2), (32, 32, 4), (64, 32, 8), (16, 64, 4), (32, 64, 8), (32, 16, 2), (64, 16, 4),
             (16, 16, 2), (32, 32, 8), (64, 32, 4)]
    stages = (1, 2, 3)
    if device != "cuda":  # --smoke: just run the code path
        tiles, stages = tiles[:1], stages[:2]
    for block_t, block_h, num_warps in tiles:
        for num_stages in stages:
            config = dict(block_t=block_t, block_h=block_h, num_warps=num_warps, num_stages=num_stages)
            scan_triton.CONFIG.update(config)
            try:
                ms = bench(lambda: torch.autograd.backward(scan_triton.min_gru(gate, cand), grad), device,
                           grad_to_none=[gate, cand])
            except Exception as e:  # e.g. out of shared memory for a deep pipeline
                print(f"  {config}: failed ({type(e).__name__}: {e})")
                continue
            results.append({**config, "ms": ms})
            print(f"  {config}: {ms:.3f} ms")
    best = min(results, key=lambda r: r["ms"])
    scan_triton.CONFIG.update({k: v for k, v in best.items() if k != "ms"})
    print(f"  fastest: {best}")
    return {"results": results, "best": best}


# ----------------------------------------------------------------------------- 4. layer training step


def bench_layers(device: str, B: int, d: int, Ts) -> list[dict]:
    """Forward + mean-square loss + backward of one layer (d -> d), fp32."""
    layers = {
        "MinGRU (triton)": MinGRU(d, d, batch_first=True, backend="triton" if device == "cuda" else None),
        "MinGRU (torch)": MinGRU(d, d, batch_first=True, backend="torch"),
        "nn.GRU (cuDNN)": torch.nn.GRU(d, d, batch_first=True),
        "MinLSTM (triton)": MinLSTM(d, d, batch_first=True, backend="triton" if device == "cuda" else None),
        "MinLSTM (torch)": MinLSTM(d, d, batch_first=True, backend="torch"),
        "nn.LSTM (cuDNN)": torch.nn.LSTM(d, d, batch_first=True),
    }
    rows = []
    if device != "cuda":
        print("\n(--smoke: the layers named 'triton' run on the default CPU backend, cuDNN is not involved)")
    print(f"\n== layer training step (fwd + loss + bwd), B={B}, d_in=d_h={d}, fp32: ms (peak MiB)")
    print(f"{'T':>6}" + "".join(f"{name:>22}" for name in layers) + f"{'GRU/minGRU':>12}{'LSTM/minLSTM':>14}")
    for T in Ts:
        x = torch.randn(B, T, d, device=device, requires_grad=True)
        row = {"B": B, "d": d, "T": T}
        line = f"{T:6}"
        for name, layer in layers.items():
            layer = layer.to(device)
            params = list(layer.parameters())

            def step():
                out, _ = layer(x)
                out.square().mean().backward()

            ms = bench(step, device, grad_to_none=[x, *params])
            mem = peak_memory_mib(step, device)
            row[name] = {"ms": ms, "peak_mib": mem}
            line += f"{ms:11.3f} ({mem:7.1f})" if mem is not None else f"{ms:11.3f}{'':11}"
        row["speedup_gru"] = row["nn.GRU (cuDNN)"]["ms"] / row["MinGRU (triton)"]["ms"]
        row["speedup_lstm"] = row["nn.LSTM (cuDNN)"]["ms"] / row["MinLSTM (triton)"]["ms"]
        print(line + f"{row['speedup_gru']:11.2f}x{row['speedup_lstm']:13.2f}x")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> None:
    if args.smoke:
        device = "cpu"
        scan_triton.CONFIG.update(block_t=16, block_h=16)
        shapes = dict(check=(1, 37, 19), bw_bytes=2**20, scan_B=1, scan_T=(32,), scan_H=(16,), cell_T=32,
                      sweep=(1, 32, 16), layer_B=2, layer_d=8, layer_T=(16,))
    elif torch.cuda.is_available():
        device = "cuda"
        shapes = dict(check=(2, 4096 + 3, 300), bw_bytes=2**30, scan_B=64, scan_T=(1024, 4096, 16384),
                      scan_H=(256, 512, 1024), cell_T=4096, sweep=(64, 4096, 512), layer_B=64, layer_d=256,
                      layer_T=tuple(2**k for k in range(6, 13)))
    else:
        sys.exit("gpu_scan.py needs a CUDA GPU (or --smoke to test the script on CPU)")

    torch.manual_seed(0)
    results: dict = {"machine": machine_info(device), "smoke": args.smoke}
    print("machine:", json.dumps(results["machine"]))
    results["correctness"] = check_correctness(device, *shapes["check"])
    bandwidth = measure_bandwidth(device, shapes["bw_bytes"])
    results["bandwidth_GBps"] = bandwidth
    if args.sweep:
        results["sweep"] = sweep_configs(device, *shapes["sweep"])
    results["config"] = dict(scan_triton.CONFIG)
    results["scan"] = bench_scan(device, shapes["scan_B"], shapes["scan_T"], shapes["scan_H"], bandwidth)
    results["cells"] = bench_cells(device, shapes["scan_B"], shapes["cell_T"], shapes["scan_H"], bandwidth)
    if not args.skip_layers:
        results["layers"] = bench_layers(device, shapes["layer_B"], shapes["layer_d"], shapes["layer_T"])

    # The GPU targets, stated against what was measured.
    best_frac = max(r["fwd_frac_bw"] for r in results["scan"])
    print(f"\nscan forward, best fraction of measured bandwidth: {100 * best_frac:.0f}% (target >= 80%)")
    if "layers" in results:
        last = results["layers"][-1]
        print(f"T={last['T']}: nn.GRU / MinGRU = {last['speedup_gru']:.2f}x (target >= 5x), "
              f"nn.LSTM / MinLSTM = {last['speedup_lstm']:.2f}x")
    print(f"all correctness checks ok: {all(r['ok'] for r in results['correctness'])}")
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(ARGS)
