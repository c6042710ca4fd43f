"""`import minrnn` stays light: no optional or heavy module is imported with it (the time itself is
measured by benchmarks/startup.py, not asserted here)."""

from __future__ import annotations

import subprocess
import sys

import torch

from minrnn import functional

HEAVY = ["torch._dynamo", "triton", "numba", "huggingface_hub", "matplotlib", "gymnasium", "minrnn.tasks", "minrnn.rl",
         "minrnn.train.trainer",
         "mambapy"]


def test_import_minrnn_imports_nothing_heavy():
    code = f"import sys, minrnn; minrnn.MinRNNLM, minrnn.load; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_our_constant_marker_is_what_torch_compiler_sets():
    """functional marks its kernel probes as torch.compiler.assume_constant_result does, without
    importing torch._dynamo: the attribute that decorator sets must be the one we set."""

    def probe() -> bool:
        return True

    marked = torch.compiler.assume_constant_result(probe)
    ours = {k: v for k, v in vars(functional._cpu_kernels_available).items() if k.startswith("_dynamo")}
    assert ours and {k: v for k, v in vars(marked).items() if k.startswith("_dynamo")} == ours
