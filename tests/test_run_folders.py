"""Run folders are protected (one training process at a time, never a user's files overwritten, an
ended run left as it is) and a run that diverges says so (exit 3, result.json, report, sample)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minrnn.cli import main
from minrnn.data.shakespeare import load_shakespeare
from minrnn.models import LMConfig, MinRNNLM
from minrnn.tasks import shakespeare
from minrnn.train import TrainConfig, Trainer
from minrnn.train.checkpoint import BEST, CHECKPOINT, load_checkpoint
from minrnn.train.trainer import TrainingDiverged, lm_loss

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--context", "32", "--eval-every", "2", "--eval-iters", "2"]


def train(out: Path, *flags: str) -> int:
    return main(["train", "shakespeare", "--out", str(out), *TINY, *flags])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def strict_records(path: Path) -> list[dict]:
    """metrics.jsonl as strict JSON (no NaN / Infinity, which other tools cannot read)."""
    def refuse(token):
        raise ValueError(f"{path} holds {token}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


# --- one training process per run folder --------------------------------------------------------------


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding the run folder's lock, as a training process does (flock + pid)."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, f'pid {os.getpid()} on here'.encode()); "
            "print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.skipif(sys.platform == "win32", reason="run folders are locked with fcntl")
def test_a_run_folder_in_use_is_refused_and_a_dead_owners_lock_is_taken(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    other = hold_lock(out)
    try:
        assert train(out, "--steps", "2") == 2
        err = capsys.readouterr().err
        assert f"{out} is in use by another training process (pid {other.pid} on here)" in err, err
        assert sorted(os.listdir(out)) == [".lock"]  # nothing written
    finally:
        other.kill()
        other.wait()
    # The owner died (kill -9 leaves its lock file behind): the next run takes the lock.
    assert train(out, "--steps", "2") == 0
    assert [r["step"] for r in strict_records(out / "metrics.jsonl")] == [1, 2]

    other = hold_lock(out)
    try:
        assert main(["train", "shakespeare", "--out", str(out), "--resume", "--steps", "4"]) == 2
        assert "in use by another training process" in capsys.readouterr().err
    finally:
        other.kill()
        other.wait()
    assert main(["train", "shakespeare", "--out", str(out), "--resume", "--steps", "4"]) == 0
    assert [r["step"] for r in strict_records(out / "metrics.jsonl")] == [1, 2, 3, 4]


@pytest.mark.slow  # a training process: ~20 s on a busy 2-core machine
def test_two_trainings_into_one_folder(tmp_path, capsys):
    """A second `minrnn train` (or --resume) while a training runs in --out is refused; the first
    one's metrics and best checkpoint stay its own."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "minrnn", "train", "shakespeare", "--out", str(out), *TINY, "--steps", "100000"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        assert train(out, "--steps", "4") == 2
        assert f"in use by another training process (pid {first.pid} " in capsys.readouterr().err
        assert main(["train", "shakespeare", "--out", str(out), "--resume"]) == 2
        assert "in use by another training process" in capsys.readouterr().err
        records = strict_records(out / "metrics.jsonl")
        assert [r["step"] for r in records] == list(range(1, len(records) + 1))
    finally:
        first.kill()
        first.wait()


# --- a folder that is not a minrnn run -------------------------------------------------------------------


def test_a_folder_holding_other_files_is_never_overwritten(tmp_path, capsys):
    mine = tmp_path / "my-project"
    mine.mkdir()
    files = {"config.json": '{"learning_rate": 0.1}\n', "metrics.jsonl": '{"acc": 0.9}\n', "result.json": "{}\n"}
    for name, text in files.items():
        (mine / name).write_text(text)
    for flags in (["--steps", "2"], ["--resume"]):
        assert train(mine, *flags) == 2
        assert "holds files that are not a minrnn run (config.json, metrics.jsonl, result.json)" in capsys.readouterr().err
    assert {p.name: p.read_text() for p in mine.iterdir()} == files

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("x")
    assert train(notes, "--steps", "2") == 2
    assert "not a minrnn run (todo.txt)" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(empty, "--steps", "2") == 0  # an empty folder is fine


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--steps", "2") == 0
    for name in (CHECKPOINT, BEST, "result.json"):
        (out / name).unlink()  # as if killed at step 1: config.json and metrics.jsonl only
    assert main(["train", "shakespeare", "--out", str(out), "--resume"]) == 2
    assert "has no checkpoint yet" in capsys.readouterr().err
    assert train(out, "--steps", "2") == 0  # our own run's folder: it starts over
    assert [r["step"] for r in strict_records(out / "metrics.jsonl")] == [1, 2]


# --- an ended run, resumed -------------------------------------------------------------------------------


def test_resuming_an_ended_run_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--steps", "4") == 0
    before = snapshot(out)
    result = json.loads(before["result.json"])
    assert result["stopped"] == "finished" and result["step"] == 4 and math.isfinite(result["val_loss"])
    capsys.readouterr()
    assert main(["train", "shakespeare", "--out", str(out), "--resume"]) == 0
    stdout = capsys.readouterr().out
    assert "has already ended (finished at step 4); nothing to do" in stdout and "done: step 4" in stdout
    assert snapshot(out) == before
    assert main(["train", "shakespeare", "--out", str(out), "--resume", "--steps", "3"]) == 0
    assert snapshot(out) == before

    # Killed after its last checkpoint, before result.json: resuming completes result.json.
    (out / "result.json").unlink()
    assert main(["train", "shakespeare", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "result.json").read_text()) == result

    # More --steps extend it, as before.
    assert main(["train", "shakespeare", "--out", str(out), "--resume", "--steps", "6"]) == 0
    assert [r["step"] for r in strict_records(out / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert json.loads((out / "result.json").read_text())["step"] == 6


# --- divergence --------------------------------------------------------------------------------------------


def test_a_diverged_run_stops_says_so_and_keeps_its_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--steps", "4") == 0
    # Resumed with an absurd learning rate: the weights blow up within a few steps.
    capsys.readouterr()
    code = main(["train", "shakespeare", "--out", str(out), "--resume", "--steps", "40", "--lr", "1e30", "--grad-clip", "0"])
    err = capsys.readouterr().err
    assert code == 3, err
    result = json.loads((out / "result.json").read_text())
    assert result["stopped"] == "diverged" and result["checkpoint_step"] >= 4, result
    step = result["step"]
    assert f"minrnn: error: training diverged at step {step} (" in err and "--resume and a lower --lr" in err
    assert set(result["nonfinite"]) <= {"train_loss", "grad_norm", "val_loss"} and result["nonfinite"]
    assert result["best_val_loss"] is not None and result["best_step"] <= step
    ckpt = load_checkpoint(out / CHECKPOINT)
    assert ckpt["step"] == result["checkpoint_step"] < step
    assert all(bool(t.isfinite().all()) for t in ckpt["model"].values())
    records = strict_records(out / "metrics.jsonl")  # no NaN written
    assert [r["step"] for r in records] == list(range(1, step))

    assert main(["report", str(out), "--out", str(tmp_path / "table")]) == 0
    (row,) = json.loads((tmp_path / "table.json").read_text())["runs"]
    assert row["stopped"] == "diverged" and not row["finished"]
    assert f"(diverged at step {step})" in (tmp_path / "table.md").read_text()

    capsys.readouterr()
    assert main(["sample", str(out), "--checkpoint", "latest", "--tokens", "5"]) == 0
    assert f"note: this run diverged at step {step}" in capsys.readouterr().err

    # A diverged run has not ended: resuming with a sane learning rate continues from the checkpoint.
    assert main(["train", "shakespeare", "--out", str(out), "--resume", "--lr", "1e-3", "--steps", "12"]) == 0
    assert json.loads((out / "result.json").read_text())["stopped"] == "finished"
    assert [r["step"] for r in strict_records(out / "metrics.jsonl")] == list(range(1, 13))


def test_a_run_diverging_before_its_first_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--steps", "6", "--lr", "1e30", "--grad-clip", "0", "--warmup-steps", "0") == 3
    assert "no checkpoint was saved before it. Start it again with a lower --lr" in capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["stopped"] == "diverged" and result["checkpoint_step"] is None and not (out / CHECKPOINT).exists()
    assert main(["train", "shakespeare", "--out", str(out), "--resume"]) == 2
    assert "has no checkpoint yet" in capsys.readouterr().err
    (out / "metrics.jsonl").write_text("")  # as if it diverged at its first step
    assert main(["report", str(out), "--out", str(tmp_path / "table")]) == 2
    assert f"has no metrics yet (metrics.jsonl is empty): the run diverged at step {result['step']}" in capsys.readouterr().err


@pytest.fixture(scope="module")
def data():
    return load_shakespeare()


def nan_at(steps: set[int]):
    """lm_loss, NaN at the given optimizer steps (1-based; eval calls pass through)."""
    calls = {"n": 0}

    def loss_fn(model, x, y):
        loss = lm_loss(model, x, y)
        if model.training:
            calls["n"] += 1
            if calls["n"] in steps:
                return loss * float("nan")
        return loss

    return loss_fn


def make_trainer(data, out: Path, loss_fn, **kw) -> Trainer:
    torch.manual_seed(0)
    model = MinRNNLM(LMConfig(vocab_size=65, d_model=16, n_layers=1))
    cfg = TrainConfig(steps=8, batch_size=4, context=32, eval_every=4, eval_iters=2, device="cpu", **kw)
    return Trainer(model, shakespeare.batch_fn(data, cfg), cfg, out, loss_fn=loss_fn)


def test_nonfinite_loss_stops_without_touching_the_weights(tmp_path, data):
    trainer = make_trainer(data, tmp_path / "run", nan_at({6}))
    before = {}
    original = trainer._train_step

    def spy():
        before.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
        return original()

    trainer._train_step = spy
    with pytest.raises(TrainingDiverged, match=r"training diverged at step 6 \(train_loss nan, grad_norm nan\); the checkpoint keeps the run as of step 4") as e:
        trainer.fit()
    assert (e.value.step, e.value.checkpoint_step) == (6, 4)
    for k, v in trainer.model.state_dict().items():  # the NaN step was not applied
        assert torch.equal(v, before[k]), k


def test_nonfinite_steps_can_be_skipped_and_are_counted(tmp_path, data):
    trainer = make_trainer(data, tmp_path / "run", nan_at({3, 6}), on_nonfinite="skip")
    last = trainer.fit()
    records = strict_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 9))
    assert [r["step"] for r in records if r.get("skipped")] == [3, 6]
    assert "train_loss" not in records[2] and records[2]["skipped_steps"] == 1
    assert records[-1]["skipped_steps"] == last["skipped_steps"] == 2 and math.isfinite(last["val_loss"])
    assert all(bool(p.isfinite().all()) for p in trainer.model.parameters())
    # The count survives a resume.
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["skipped_steps"] == 2
