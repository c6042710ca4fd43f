"""Start-up cost of ``import minrnn`` beyond ``import torch`` (issue 11: at most 0.3 s more).

Each import runs in a fresh interpreter, alternating torch / minrnn so that both see the same
machine load; the medians and their difference are printed, with the heavy optional modules that
``import minrnn`` pulled in (there should be none).

    PYTHONPATH=src python benchmarks/startup.py --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("torch._dynamo", "triton", "numba", "sympy", "huggingface_hub", "matplotlib", "gymnasium", "h5py", "minrnn.tasks", "minrnn.rl")


def timed_import(module: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - start


def importtime_beyond_torch() -> float:
    """Seconds that ``python -X importtime -c "import minrnn"`` spends outside torch's own import
    tree (minrnn's modules and what they import beyond torch): less noisy than wall times."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import minrnn"], check=True, capture_output=True, text=True).stderr
    cumulative = {}
    for line in err.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[2].strip() in ("minrnn", "torch") and parts[1].strip().isdigit():
            cumulative.setdefault(parts[2].strip(), int(parts[1]))
    return (cumulative["minrnn"] - cumulative["torch"]) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"torch": [], "minrnn": []}
    timed_import("minrnn")  # warm the file cache and the bytecode of both
    for _ in range(args.repeats):
        for module in times:
            times[module].append(timed_import(module))
    med = {m: statistics.median(t) for m, t in times.items()}
    code = f"import sys, minrnn; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    heavy = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    print(f"python {sys.version.split()[0]}, {args.repeats} fresh interpreters each (medians; min / max)")
    for m, t in times.items():
        print(f"  import {m:<7} {med[m]:.3f} s  ({min(t):.3f} / {max(t):.3f})")
    print(f"  minrnn beyond torch: {med['minrnn'] - med['torch']:+.3f} s (target <= 0.3 s)")
    beyond = statistics.median(importtime_beyond_torch() for _ in range(3))
    print(f"  python -X importtime: minrnn's import tree beyond torch {beyond:.3f} s (median of 3)")
    print(f"  heavy modules imported by `import minrnn`: {heavy or 'none'}")


if __name__ == "__main__":
    main()
