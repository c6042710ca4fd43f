"""Side-by-side timing of two or more source trees of minrnn in ONE run (before/after a change).

    git worktree add --detach /work/wt-old 89974e2
    PYTHONPATH=src nice -n 19 python benchmarks/ab_versions.py old=/work/wt-old new=. \\
        --threads 1 2 --repeats 7 --out benchmarks/results/ab-cpu

Each tree runs in its own worker process (``PYTHONPATH=<tree>/src``, nothing else shared), which
builds the same inputs from the same seed and then waits for orders on stdin: "run case X once
and report the seconds". The parent interleaves the orders (each round: every case, every tree,
in turn), so a change of machine load hits all trees alike; figures are medians over rounds.
Workers set ``torch.set_num_threads`` before each call (the fused CPU kernels follow it).

Cases (B=64, H=d=256 by default; ``--seq-len``):
  scan/<op> fwd, fwd+bwd  `functional.<op>` on the default backend, inputs as the layers produce
                          them (chunks of one tensor), fwd+bwd from a fixed random grad_h
  layer/<Layer>           a training step of MinGRU(d, d) / MinLSTM(d, d) (batch_first), as in
                          `minrnn bench runtime`: forward, backward from a fixed random upstream
                          gradient, input requiring grad, gradients dropped after
  layer/Linear(...)       the same step of the layer's own input Linear alone (its floor)
  matmul                  a (B*T, d) x (d, 3d) matmul, forward only: how torch's matmul scales
                          with threads, beside the kernels

Writes <out>.json (every time) and <out>.md (medians, ratios to the first tree, layer / Linear).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# ----------------------------------------------------------------------------- worker

_WORKER = r"""
import json, sys, time
import torch
from torch import nn
from minrnn import MinGRU, MinLSTM, functional as F

B, T, H, seed = (int(a) for a in sys.argv[1:5])
torch.manual_seed(seed)
pre2 = torch.randn(B, T, 2 * H)
pre3 = torch.randn(B, T, 3 * H)
grad_h = torch.randn(B, T, H)
x = torch.randn(B, T, H).requires_grad_()
w = torch.randn(3 * H, H)


def scan(op, backward):
    if op == "linear_scan":  # a decay in (0, 1) and any b, contiguous leaves
        g, c = pre2.chunk(2, -1)
        leaves = [torch.sigmoid(g).contiguous().requires_grad_(backward), c.contiguous().requires_grad_(backward)]
        args = leaves
    else:  # chunks of one leaf, as the layers produce them
        leaves = [(pre2 if op == "min_gru" else pre3).clone().requires_grad_(backward)]
        args = leaves[0].chunk(2 if op == "min_gru" else 3, -1)
    fn = getattr(F, op)

    def run():
        if backward:
            fn(*args).backward(grad_h)
            for leaf in leaves:
                leaf.grad = None
        else:
            with torch.no_grad():
                fn(*args)
    return run


def layer(model):
    out_width = model.hidden_size if hasattr(model, "hidden_size") else model.out_features
    g = torch.randn(B, T, out_width)
    def run():
        y = model(x)
        y = y[0] if isinstance(y, tuple) else y
        y.backward(g)
        x.grad = None
        for p in model.parameters():
            p.grad = None
    return run


def matmul():
    a = x.detach().view(B * T, H)
    return lambda: a @ w.t()


cases = {}
for op in ("linear_scan", "min_gru", "min_lstm"):
    cases[f"scan/{op} fwd"] = scan(op, False)
    cases[f"scan/{op} fwd+bwd"] = scan(op, True)
cases["layer/MinGRU"] = layer(MinGRU(H, H, batch_first=True))
cases["layer/Linear(d, 2d)"] = layer(nn.Linear(H, 2 * H))
cases["layer/MinLSTM"] = layer(MinLSTM(H, H, batch_first=True))
cases["layer/Linear(d, 3d)"] = layer(nn.Linear(H, 3 * H))
cases["matmul (B*T, d) x (d, 3d)"] = matmul()
print(json.dumps(list(cases)), flush=True)
for line in sys.stdin:
    name, threads = line.rstrip("\n").rsplit(" ", 1)
    torch.set_num_threads(int(threads))
    c0, t0 = time.process_time(), time.perf_counter()
    cases[name]()
    print(json.dumps([time.perf_counter() - t0, time.process_time() - c0]), flush=True)
"""


class Worker:
    def __init__(self, label: str, tree: str, B: int, T: int, H: int, seed: int):
        env = {**os.environ, "PYTHONPATH": os.path.join(os.path.abspath(tree), "src")}
        self.label, self.tree = label, tree
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(B), str(T), str(H), str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.cases = json.loads(self._readline())
        self.commit = subprocess.run(
            ["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "-C", tree, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        self.commit += "+dirty" if dirty else ""

    def _readline(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.label} ({self.tree}) died; run it alone to see its error")
        return line

    def run(self, case: str, threads: int) -> tuple[float, float]:
        self.proc.stdin.write(f"{case} {threads}\n")
        self.proc.stdin.flush()
        wall, cpu = json.loads(self._readline())
        return wall, cpu

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


# ----------------------------------------------------------------------------- parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trees", nargs="+", help="LABEL=PATH of a minrnn source tree (the first is the baseline)")
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--cases", default="", help="comma-separated substrings: only cases that contain one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output path without extension (.json and .md are written)")
    p.add_argument("--from-json", action="store_true", help="only rewrite <out>.md from an existing <out>.json")
    args = p.parse_args()
    if args.from_json:
        with open(args.out + ".json") as fh:
            result = json.load(fh)
        labels = list(result["trees"])
        cases = list(dict.fromkeys(m["case"] for m in result["measurements"]))
        med = {(m["tree"], m["case"], m["threads"]): m["median_s"] for m in result["measurements"]}
        md = format_md(result, labels, cases, med)
        with open(args.out + ".md", "w") as fh:
            fh.write(md)
        print(md)
        return

    load_start = os.getloadavg()
    workers = [Worker(*spec.split("=", 1), args.batch, args.seq_len, args.hidden, args.seed) for spec in args.trees]
    cases = [c for c in workers[0].cases if not args.cases or any(s in c for s in args.cases.split(","))]
    times = {(w.label, c, n): [] for w in workers for c in cases for n in args.threads}
    cpu = {k: [] for k in times}
    for n in args.threads:
        for c in cases:  # warm-up: JIT compilation / cache load, first touch of the buffers
            for w in workers:
                w.run(c, n)
        for r in range(args.repeats):
            for c in cases:
                # Alternate which tree goes first, so that neither always follows the other.
                for w in workers if r % 2 == 0 else workers[::-1]:
                    wall, cpu_s = w.run(c, n)
                    times[w.label, c, n].append(wall)
                    cpu[w.label, c, n].append(cpu_s)
            print(f"threads={n} round {r + 1}/{args.repeats} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    load_end = os.getloadavg()
    for w in workers:
        w.close()

    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "ab_versions",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "trees": {w.label: {"path": w.tree, "commit": w.commit} for w in workers},
        "shape": {"B": args.batch, "T": args.seq_len, "H": args.hidden},
        "threads": args.threads,
        "repeats": args.repeats,
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_average_start": load_start, "load_average_end": load_end},  # fmt: skip
        "measurements": [
            {"tree": label, "case": c, "threads": n, "median_s": med[label, c, n], "times_s": times[label, c, n],
             "cpu_times_s": cpu[label, c, n]}  # fmt: skip
            for (label, c, n) in times
        ],
    }
    with open(args.out + ".json", "w") as fh:
        json.dump(result, fh, indent=1)
    md = format_md(result, [w.label for w in workers], cases, med)
    with open(args.out + ".md", "w") as fh:
        fh.write(md)
    print(md)


def format_md(result: dict, labels: list[str], cases: list[str], med: dict) -> str:
    base = labels[0]
    trees = ", ".join(f"{k} = {v['commit']} ({v['path']})" for k, v in result["trees"].items())
    s = result["shape"]
    m = result["machine"]
    lines = [
        f"# A/B timing, {trees}",
        "",
        f"`{result['command']}`",
        "",
        f"B={s['B']} T={s['T']} H=d={s['H']}, float32, median wall ms of {result['repeats']} interleaved rounds "
        "(process CPU times per call are in the JSON); "
        f"{m['cpu_count']} CPUs ({m['processor']}), load average {m['load_average_start'][0]:.2f} at start, "
        f"{m['load_average_end'][0]:.2f} at end.",
        "",
    ]
    for n in result["threads"]:
        head = ["case"] + [f"{label} ms" for label in labels] + [f"{label} / {base}" for label in labels[1:]]
        lines += [f"## threads = {n}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in cases:
            row = [c] + [f"{med[label, c, n] * 1e3:.1f}" for label in labels]
            row += [f"{med[label, c, n] / med[base, c, n]:.3f}" for label in labels[1:]]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        pairs = [("layer/MinGRU", "layer/Linear(d, 2d)"), ("layer/MinLSTM", "layer/Linear(d, 3d)")]
        if all(a in cases and b in cases for a, b in pairs):
            cpu = {(x["tree"], x["case"], x["threads"]): statistics.median(x["cpu_times_s"]) for x in result["measurements"]}
            for what, t in (("wall", med), ("process CPU", cpu)):
                lines.append(f"Layer step / its Linear's step ({what} time medians): " + "; ".join(
                    f"{a.split('/')[1]} " + ", ".join(f"{label} {t[label, a, n] / t[label, b, n]:.2f}x" for label in labels)
                    for a, b in pairs) + ".")  # fmt: skip
                lines.append("")
    if len(result["threads"]) > 1:
        n0, n1 = result["threads"][0], result["threads"][-1]
        lines += [f"## speed-up {n0} -> {n1} threads (median {n0}-thread time / median {n1}-thread time)", "",
                  "| case | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]  # fmt: skip
        for c in cases:
            lines.append(f"| {c} | " + " | ".join(f"{med[label, c, n0] / med[label, c, n1]:.2f}x" for label in labels) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
