"""Crash safety through the CLI: a training run killed with SIGKILL again and again, at random
moments and in the middle of checkpoint writes, then resumed each time, ends with exactly the
metrics and weights of the same run never interrupted."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minrnn.train.checkpoint import CHECKPOINT, load_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"
# Long enough that the six kills (each after at most a few new steps) land before the run's end.
STEPS = 60
FLAGS = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--context", "32", "--eval-iters", "2", "--warmup-steps", "2",
         "--steps", str(STEPS), "--eval-every", "3", "--ckpt-every", "2", "--dropout", "0.1"]

# `minrnn` with slow checkpoint writes: when $PAUSE_S is set, each safetensors file is written in two
# halves with a pause between them (after announcing the file in $MARKER), so that a kill can land
# inside the write; then it is fsynced and renamed over the checkpoint as usual.
WRAPPER = """
import os, sys, time
import minrnn.train.checkpoint as checkpoint
real_save_file = checkpoint.save_file

def slow_save_file(tensors, filename, metadata=None):
    real_save_file(tensors, filename, metadata=metadata)
    pause = float(os.environ.get("PAUSE_S", "0"))
    if pause:
        data = open(filename, "rb").read()
        with open(filename, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            with open(os.environ["MARKER"], "a") as m:
                m.write(filename + "\\n")
            time.sleep(pause)
            f.write(data[len(data) // 2 :])

checkpoint.save_file = slow_save_file
from minrnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def minrnn(args: list[str], **env) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen([sys.executable, "-c", WRAPPER, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> bool:
    """Poll until condition() (True) or the process ends (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise TimeoutError("the training process made no progress")


def curve(run: Path) -> list[tuple]:
    """Every figure of every record that does not depend on the clock."""
    keys = ("step", "train_loss", "grad_norm", "lr", "tokens", "val_loss", "early_stop")
    return [tuple(r.get(k) for k in keys) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.slow  # about 8 CLI processes: 2-4 min on a busy 2-core machine
def test_kill_9_again_and_again_then_resume_follows_the_uninterrupted_run(tmp_path):
    ref = minrnn(["train", "shakespeare", "--out", str(tmp_path / "ref"), *FLAGS])
    assert ref.wait(timeout=600) == 0, ref.stderr.read()

    rng = random.Random(torch.initial_seed())  # seeded per test by conftest: replayable
    # A step's training time in the reference run: a random kill sleeps up to one step, so that it
    # lands anywhere within a step without letting a fast machine train on to the end.
    records = [json.loads(r) for r in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    step_s = records[-1]["time"] / STEPS
    # A kill inside the write of ckpt.safetensors (twice), inside whichever checkpoint file is
    # written next (best.safetensors, mostly), or at a random moment: start-up, a step, a validation.
    plans = ["in a write of .ckpt.safetensors"] * 2 + ["in a write of .safetensors"] + ["at a random moment"] * 3
    rng.shuffle(plans)
    run, marker = tmp_path / "killed", tmp_path / "writes.txt"
    landed = []
    for plan in [*plans, "to the end"]:
        resume = (run / CHECKPOINT).exists()  # killed before its first checkpoint: start it again
        args = ["train", "shakespeare", "--out", str(run), *(["--resume"] if resume else FLAGS)]
        writes = lines(marker)
        proc = minrnn(args, MARKER=str(marker), PAUSE_S="3" if plan.startswith("in a write") else "0")
        if plan == "to the end":
            assert proc.wait(timeout=600) == 0, proc.stderr.read()
            break
        start = lines(run / "metrics.jsonl")
        if plan.startswith("in a write"):
            target = plan.split()[-1]
            alive = wait_for(lambda: any(target in w for w in marker.read_text().splitlines()[writes:]) if marker.exists() else False, proc)
        else:  # after 0 to 4 new steps, anywhere within the step
            k = rng.randrange(5)
            alive = wait_for(lambda: lines(run / "metrics.jsonl") >= start + k, proc)
            time.sleep(rng.uniform(0, step_s))
        if not alive or proc.poll() is not None:
            pytest.fail(f"the run ended before the kill {plan!r}: {proc.stderr.read()}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        landed.append(f"{plan} at record {lines(run / 'metrics.jsonl')}" + (f" ({marker.read_text().splitlines()[-1]})" if plan != "at a random moment" else ""))

    print("kills:", *landed, sep="\n  ")  # shown with -s
    assert curve(run) == curve(tmp_path / "ref"), landed
    a, b = load_checkpoint(tmp_path / "ref" / CHECKPOINT), load_checkpoint(run / CHECKPOINT)
    assert a["step"] == b["step"] == STEPS
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), (k, landed)
    assert json.loads((run / "result.json").read_text())["stopped"] == "finished"
