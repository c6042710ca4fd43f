"""Trainer, checkpoints, resume, CLI and DDP: tiny models, few steps."""

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
from safetensors.torch import save_file

from minrnn.cli import main
from minrnn.data.shakespeare import load_shakespeare
from minrnn.models import LMConfig, MinRNNLM
from minrnn.tasks import shakespeare
from minrnn.train import TrainConfig, Trainer
from minrnn.train.checkpoint import BEST, CHECKPOINT, load_checkpoint, save_checkpoint
from minrnn.train.trainer import param_groups

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def data():
    return load_shakespeare()


def tiny_config(**kw) -> TrainConfig:
    base = dict(steps=12, batch_size=4, context=32, lr=3e-3, min_lr=3e-4, warmup_steps=3, eval_every=4, eval_iters=2, device="cpu", seed=7)
    return TrainConfig(**{**base, **kw})


def tiny_model(seed: int = 0, cell: str = "mingru") -> MinRNNLM:
    torch.manual_seed(seed)
    # dropout > 0 so that the tests also cover the dropout masks' RNG
    return MinRNNLM(LMConfig(vocab_size=65, d_model=16, n_layers=2, cell=cell, expansion=2.0, mlp_ratio=2.0, dropout=0.1))


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_curve(a: list[dict], b: list[dict], rel: float) -> None:
    """Same steps, same train losses, validation at the same steps with the same losses."""
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=rel, abs=rel), ra["step"]
        assert ("val_loss" in ra) == ("val_loss" in rb), ra["step"]
        if "val_loss" in ra:
            assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=rel, abs=rel), ra["step"]


class Crash(Exception):
    pass


def crashing(get_batch, after_calls: int):
    """get_batch that raises after `after_calls` training batches: a crash mid-run."""
    calls = 0

    def fn(split, gen):
        nonlocal calls
        if split == "train":
            calls += 1
            if calls > after_calls:
                raise Crash
        return get_batch(split, gen)

    return fn


# --- schedule and optimizer groups ---------------------------------------------------------------


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=100, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    lrs = [cfg.lr_at(s) for s in range(cfg.steps)]
    assert lrs[0] == pytest.approx(1e-3 / 11)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # rising warm-up
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then decaying
    assert lrs[-1] == pytest.approx(1e-4)
    assert TrainConfig(steps=100, warmup_steps=0, lr_schedule="constant").lr_at(77) == 1e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="grad_accum"):
        TrainConfig(grad_accum=0)


def test_no_weight_decay_on_biases_norms_embeddings():
    model = tiny_model()
    decay, other = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and other["weight_decay"] == 0.0
    assert "head.weight" in decayed and any("proj" in n for n in decayed) and any("conv.weight" in n for n in decayed)
    assert not any(n.endswith("bias") or "norm" in n or n.startswith("embed") for n in decayed)
    assert len(decay["params"]) + len(other["params"]) == len(list(model.parameters()))


# --- a run folder --------------------------------------------------------------------------------


def test_fit_writes_run_folder(tmp_path, data):
    cfg = tiny_config(grad_accum=2)
    trainer = Trainer(tiny_model(), shakespeare.batch_fn(data, cfg), cfg, tmp_path)
    last = trainer.fit()
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == list(range(1, 13))
    assert [r["step"] for r in records if "val_loss" in r] == [4, 8, 12]
    assert all(math.isfinite(r["train_loss"]) and r["tokens"] == 2 * 4 * 32 for r in records)
    assert all(0 < r["time"] <= r["wall"] for r in records)  # the wall clock adds validation
    assert [r["wall"] for r in records] == sorted(r["wall"] for r in records)
    assert records[0]["lr"] == pytest.approx(cfg.lr_at(0)) and records[-1]["lr"] == pytest.approx(cfg.min_lr)
    assert last == records[-1]
    assert (tmp_path / CHECKPOINT).is_file() and (tmp_path / BEST).is_file()
    best = load_checkpoint(tmp_path / BEST)
    vals = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    assert best["step"] == min(vals, key=vals.get) and best["val_loss"] == pytest.approx(min(vals.values()))
    assert trainer.best_val == pytest.approx(min(vals.values()))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (tmp_path / "loss.png").exists()
    else:
        assert (tmp_path / "loss.png").stat().st_size > 0


@pytest.mark.parametrize("kind", ["mingru", "transformer", "lstm", *(pytest.param(k, marks=pytest.mark.slow) for k in ("minlstm", "gru"))])
def test_bf16_autocast_trains_every_model_kind(tmp_path, data, kind):
    """--dtype bf16: the matmuls run in bfloat16 under autocast, the weights stay float32, the
    loss is finite and falls as in float32."""
    from minrnn.models import build_model, model_config

    arch, config = model_config(kind, {"vocab_size": 65, "d_model": 16, "n_layers": 2, "dropout": 0.0, "n_heads": 2}, 32)
    torch.manual_seed(0)
    model = build_model(arch, config)
    seen = set()
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda m, args, out: seen.add(out.dtype))
    cfg = tiny_config(steps=5, eval_every=5, dtype="bf16", lr=1e-2)
    Trainer(model, shakespeare.batch_fn(data, cfg), cfg, tmp_path).fit()
    assert seen == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    curve = read_metrics(tmp_path)
    assert all(math.isfinite(r["train_loss"]) for r in curve)
    assert curve[-1]["train_loss"] < curve[0]["train_loss"]
    assert math.isfinite(curve[-1]["val_loss"])


def test_fresh_fit_replaces_an_earlier_run(tmp_path, data, capsys):
    """A Trainer that starts at step 0 in a used folder starts over there (the CLI refuses it)."""
    Trainer(tiny_model(), shakespeare.batch_fn(data, tiny_config(steps=8)), tiny_config(steps=8), tmp_path).fit()
    cfg = tiny_config(steps=3, eval_every=100)  # no validation before the end
    crashed = Trainer(tiny_model(), crashing(shakespeare.batch_fn(data, cfg), after_calls=2), cfg, tmp_path)
    with pytest.raises(Crash):
        crashed.fit()
    assert "removing the earlier run's ckpt.safetensors, best.safetensors" in capsys.readouterr().out
    assert not (tmp_path / CHECKPOINT).exists() and not (tmp_path / BEST).exists()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_metrics_fn_and_early_stop(tmp_path, data):
    def accuracy(model, x, y):
        logits, _ = model(x)
        return {"acc": (logits.argmax(-1) == y).float().mean().item()}

    cfg = tiny_config(steps=12, eval_every=4)
    trainer = Trainer(tiny_model(), shakespeare.batch_fn(data, cfg), cfg, tmp_path, metrics_fn=accuracy,
                      early_stop=lambda record: record["step"] >= 8)
    last = trainer.fit()
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == list(range(1, 9)) and last == records[-1]
    assert last["early_stop"] is True and not any("early_stop" in r for r in records[:-1])
    assert 0.0 <= last["val_acc"] <= 1.0
    assert last["val_loss"] == trainer.evaluate() == trainer.validate()["val_loss"]
    assert load_checkpoint(tmp_path / CHECKPOINT)["step"] == 8


def test_patience_stops_when_validation_stops_improving(tmp_path, data):
    """lr 0: the first validation (step 2) stays the best; patience 2 stops two validations later.
    A run that crashed in between resumes, counts on from the saved best step and stops there too."""
    cfg = tiny_config(steps=40, lr=0.0, min_lr=0.0, warmup_steps=0, eval_every=2, patience=2)
    trainer = Trainer(tiny_model(), shakespeare.batch_fn(data, cfg), cfg, tmp_path / "a")
    last = trainer.fit()
    assert (last["step"], trainer.best_step, last["early_stop"]) == (6, 2, True)
    crashed = Trainer(tiny_model(), crashing(shakespeare.batch_fn(data, cfg), after_calls=4), cfg, tmp_path / "b")
    with pytest.raises(Crash):
        crashed.fit()
    resumed = Trainer(tiny_model(), shakespeare.batch_fn(data, cfg), cfg, tmp_path / "b")
    resumed.resume()
    assert resumed.step == 4 and resumed.wall >= resumed.elapsed > 0
    assert resumed.fit()["step"] == 6
    with pytest.raises(ValueError, match="patience must be >= 0"):
        tiny_config(patience=-1)


def test_training_is_deterministic(tmp_path, data):
    cfg = tiny_config(steps=5)
    for run in ("a", "b"):
        Trainer(tiny_model(), shakespeare.batch_fn(data, cfg), cfg, tmp_path / run).fit()
    losses = [[r["train_loss"] for r in read_metrics(tmp_path / run)] for run in ("a", "b")]
    assert losses[0] == losses[1]


def test_tensorboard_logging(tmp_path, data):
    pytest.importorskip("torch.utils.tensorboard")
    cfg = tiny_config(steps=2, eval_every=2, tensorboard=True)
    Trainer(tiny_model(), shakespeare.batch_fn(data, cfg), cfg, tmp_path).fit()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


# --- checkpoints -----------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    w = torch.randn(3, 4)
    payload = {
        "model": {"a.weight": w, "tied.weight": w, "scalar": torch.tensor(2.5)},
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(5)}}, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.99), "params": [0]}]},
        "rng": torch.get_rng_state(),
        "step": 17,
        "best_val": None,
        "config": {"name": "x", "nested": [1, 2.5, "s", True]},
    }
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, payload)
    back = load_checkpoint(path)
    assert torch.equal(back["model"]["a.weight"], w) and torch.equal(back["model"]["tied.weight"], w)
    assert back["model"]["scalar"].item() == 2.5
    assert list(back["optimizer"]["state"]) == [0]  # int keys stay int
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], payload["optimizer"]["state"][0]["exp_avg"])
    assert back["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.99]
    assert torch.equal(back["rng"], payload["rng"])
    assert (back["step"], back["best_val"], back["config"]) == (17, None, payload["config"])
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary file left


def test_trainer_state_round_trip(tmp_path, data):
    cfg = tiny_config(steps=4)
    a = Trainer(tiny_model(), shakespeare.batch_fn(data, cfg), cfg, tmp_path)
    a.fit()
    b = Trainer(tiny_model(seed=1), shakespeare.batch_fn(data, cfg), cfg, tmp_path)
    b.resume()
    assert b.step == 4 and b.best_val == a.best_val and b.best_step == a.best_step
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), name
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    for i in sa["state"]:
        for k in sa["state"][i]:
            assert torch.equal(sa["state"][i][k], sb["state"][i][k])
    # loading into a model of another shape is a clear error
    other = MinRNNLM(LMConfig(vocab_size=65, d_model=8, n_layers=1))
    with pytest.raises(ValueError, match="does not fit this model"):
        Trainer(other, shakespeare.batch_fn(data, cfg), cfg, tmp_path).resume()


@pytest.mark.parametrize("keep", [0, 7, 100, 0.5, -9])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, data, keep):
    cfg = tiny_config(steps=4)
    Trainer(tiny_model(), shakespeare.batch_fn(data, cfg), cfg, tmp_path).fit()
    raw = (tmp_path / CHECKPOINT).read_bytes()
    cut = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(raw[:cut])
    with pytest.raises(ValueError, match=f"{bad}.*not a readable minrnn checkpoint"):
        load_checkpoint(bad)


def test_foreign_files_are_clear_errors(tmp_path):
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(os.urandom(4096))
    pickle = tmp_path / "ckpt.pt"
    torch.save({"model": {}}, pickle)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    for path in (noise, pickle):
        with pytest.raises(ValueError, match=f"{path}.*not a readable minrnn checkpoint"):
            load_checkpoint(path)
    with pytest.raises(ValueError, match=f"{plain}.*not a minrnn checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")
    # a folder without ckpt.safetensors (here: only a torch.save'd ckpt.pt)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path)


# --- resume ----------------------------------------------------------------------------------------


def test_resume_after_crash_follows_uninterrupted_run(tmp_path, data):
    cfg = tiny_config(steps=12, eval_every=4, grad_accum=2)
    get_batch = shakespeare.batch_fn(data, cfg)
    full = Trainer(tiny_model(), get_batch, cfg, tmp_path / "full")
    full.fit()

    # Crash during step 11: the checkpoint is at step 8, metrics.jsonl reaches step 10.
    run = tmp_path / "crashed"
    with pytest.raises(Crash):
        Trainer(tiny_model(), crashing(get_batch, after_calls=10 * cfg.grad_accum), cfg, run).fit()
    assert read_metrics(run)[-1]["step"] == 10 and load_checkpoint(run / CHECKPOINT)["step"] == 8
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 11, "train_lo')  # a line cut by a kill

    resumed = Trainer(tiny_model(seed=123), get_batch, cfg, run)  # other init: resume must overwrite it
    resumed.resume()
    assert resumed.step == 8
    resumed.fit()

    a, b = read_metrics(tmp_path / "full"), read_metrics(run)
    assert [r["step"] for r in b] == list(range(1, 13))  # no duplicated or missing steps
    assert_same_curve(a, b, rel=1e-6)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=300, **kw)


TINY_FLAGS = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--context", "32", "--eval-iters", "2", "--warmup-steps", "2"]


@pytest.mark.slow  # three CLI processes, ~30 s
def test_resume_after_kill_9(tmp_path):
    """A CLI run killed with SIGKILL at whatever step, then resumed, follows the uninterrupted run."""
    flags = [*TINY_FLAGS, "--steps", "40", "--eval-every", "5", "--dropout", "0.1"]
    ref = _cli("minrnn", "train", "shakespeare", "--out", str(tmp_path / "ref"), *flags)
    assert ref.returncode == 0, ref.stderr

    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "minrnn", "train", "shakespeare", "--out", str(run), *flags],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = run / "metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if len(lines) >= 12:  # past the first checkpoint (step 5) and the second (step 10)
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len((run / "metrics.jsonl").read_text().splitlines())

    res = _cli("minrnn", "train", "shakespeare", "--out", str(run), "--resume")
    assert res.returncode == 0, res.stderr
    assert "resumed" in res.stdout
    a, b = read_metrics(tmp_path / "ref"), read_metrics(run)
    assert [r["step"] for r in b] == list(range(1, 41)), f"killed after {killed_at} records"
    assert_same_curve(a, b, rel=1e-6)


# --- CLI ---------------------------------------------------------------------------------------------


def test_cli_errors_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "shakespeare", "--out", str(out), *TINY_FLAGS, "--steps", "2", "--eval-every", "2"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 2
    capsys.readouterr()
    # a second fresh run into the same folder
    assert main(["train", "shakespeare", "--out", str(out), "--steps", "2"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    # resume without a checkpoint
    assert main(["train", "shakespeare", "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    # resume changing the model
    assert main(["train", "shakespeare", "--out", str(out), "--resume", "--d-model", "32"]) == 2
    assert "--d-model" in capsys.readouterr().err
    # truncated and foreign checkpoints, for train --resume and for sample
    raw = (out / CHECKPOINT).read_bytes()
    (out / CHECKPOINT).write_bytes(raw[: len(raw) // 2])
    assert main(["train", "shakespeare", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert str(out / CHECKPOINT) in err and "not a readable minrnn checkpoint" in err and "Traceback" not in err
    (out / BEST).write_text("hello")
    assert main(["sample", str(out)]) == 2
    assert "not a readable minrnn checkpoint" in capsys.readouterr().err


def test_cli_resume_extends_a_finished_run(tmp_path, capsys):
    out = tmp_path / "run"
    flags = [*TINY_FLAGS, "--eval-every", "3"]
    assert main(["train", "shakespeare", "--out", str(out), *flags, "--steps", "3"]) == 0
    assert main(["train", "shakespeare", "--out", str(out), "--resume", "--steps", "6"]) == 0
    assert [r["step"] for r in read_metrics(out)] == list(range(1, 7))
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 6


@pytest.mark.parametrize("kind", ["minlstm", "transformer", "gru", "lstm"])
def test_cli_trains_every_model_kind(tmp_path, capsys, kind):
    out = tmp_path / kind
    assert main(["train", "shakespeare", "--model", kind, "--out", str(out), *TINY_FLAGS, "--steps", "2", "--eval-every", "2"]) == 0
    stdout = capsys.readouterr().out
    assert f"{kind}: " in stdout and "parameters" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == kind
    assert main(["sample", str(out), "--tokens", "20", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out) == len("\n") + 20 + 1


# --- distributed ---------------------------------------------------------------------------------------


@pytest.mark.slow  # five processes, ~30 s
def test_ddp_two_processes_match_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo), grad_accum 1, equals 1 process with grad_accum 2: the
    same global batch of 2 x 4 sequences per step, split differently. The 2-process run stops at
    step 3 and resumes to step 6 (a constant lr after warm-up makes extending a run exact)."""
    flags = [*TINY_FLAGS, "--eval-every", "3", "--dropout", "0.1", "--lr-schedule", "constant"]
    one = _cli("minrnn", "train", "shakespeare", "--out", str(tmp_path / "one"), *flags, "--steps", "6", "--grad-accum", "2")
    assert one.returncode == 0, one.stderr
    torchrun = ["torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "minrnn", "train", "shakespeare"]
    two = _cli(*torchrun, "--out", str(tmp_path / "two"), *flags, "--steps", "3")
    assert two.returncode == 0, two.stderr
    assert "2 process(es)" in two.stdout and two.stdout.count("parameters") == 1  # rank 0 alone prints
    two = _cli(*torchrun, "--out", str(tmp_path / "two"), "--resume", "--steps", "6")
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("resumed") == 1
    a, b = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in b] == list(range(1, 7))
    assert all(ra["tokens"] == rb["tokens"] == 2 * 4 * 32 for ra, rb in zip(a, b))
    assert_same_curve(a, b, rel=1e-5)
    wa = load_checkpoint(tmp_path / "one" / CHECKPOINT)["model"]
    wb = load_checkpoint(tmp_path / "two" / CHECKPOINT)["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # three processes, ~15 s
def test_ddp_early_stop_stops_every_rank(tmp_path):
    worker = Path(__file__).with_name("ddp_early_stop_worker.py")
    res = _cli("torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker), str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("rank stopped at 4") == 2
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4] and read_metrics(tmp_path)[-1]["early_stop"]


def test_paper_preset_matches_the_paper():
    model, train, _ = shakespeare.configs("paper")
    assert (model.n_layers, model.d_model, model.expansion, model.conv_kernel, model.dropout) == (3, 384, 2.0, 4, 0.2)
    assert model.mlp_ratio > 0  # Conv4 -> minRNN -> MLP blocks
    assert (train.lr, train.batch_size, train.context, train.grad_clip, train.steps, train.eval_every) == (1e-3, 64, 256, 0.25, 5000, 25)
    assert (train.grad_accum, train.beta1) == (1, 0.9)


# --- deterministic validation ----------------------------------------------------------------------


def test_fixed_windows_cover_the_split_without_overlap():
    from minrnn.data.text import fixed_windows

    tokens = torch.arange(1000)
    x, y = fixed_windows(tokens, 32)
    assert x.shape == y.shape == (31, 32)  # (1000 - 1) // 32 windows of 33 tokens
    assert torch.equal(x.flatten(), tokens[: 31 * 32]) and torch.equal(y, x + 1)
    xs, _ = fixed_windows(tokens, 32, 4)  # evenly spaced: windows 0, 7, 15, 23
    assert torch.equal(xs[:, 0], torch.tensor([0, 7, 15, 23]) * 32)
    assert torch.equal(fixed_windows(tokens.numpy(), 32, 100)[0], x)  # n >= N: all; numpy like torch
    with pytest.raises(ValueError, match="need more than context"):
        fixed_windows(tokens[:32], 32)


def test_window_validation_is_a_fixed_pass_over_the_split(tmp_path, data):
    from minrnn.data.text import fixed_windows

    cfg = tiny_config(steps=4, eval_every=2, validation="windows", val_windows=10, batch_size=3)
    val_set = fixed_windows(data.val, cfg.context, cfg.val_windows)
    trainer = Trainer(tiny_model(), shakespeare.batch_fn(data, cfg), cfg, tmp_path / "run", val_set=val_set)
    record = trainer.validate()
    assert record["val_windows"] == 10
    # the mean over the 10 windows, read in slices of 3, 3, 3, 1
    trainer.model.eval()
    with torch.no_grad():
        logits, _ = trainer.model(val_set[0])
        expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), val_set[1].flatten()).item()
    assert record["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert trainer.validate() == record  # deterministic
    trainer.fit()
    evals = [r for r in read_metrics(tmp_path / "run") if "val_loss" in r]
    assert [r["step"] for r in evals] == [2, 4] and all(r["val_windows"] == 10 for r in evals)


def test_window_validation_needs_a_held_out_split(tmp_path, data):
    cfg = tiny_config(validation="windows")
    with pytest.raises(ValueError, match="needs a task with a fixed held-out split"):
        Trainer(tiny_model(), shakespeare.batch_fn(data, cfg), cfg, tmp_path / "run")
    with pytest.raises(ValueError, match="applies to validation 'windows' only"):
        tiny_config(val_windows=5)


def test_cli_window_validation_counts_the_whole_split(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "shakespeare", "--out", str(out), *TINY_FLAGS, "--steps", "1", "--validation", "windows"]) == 0
    assert "validation: all non-overlapping val windows of 32" in capsys.readouterr().out
    assert read_metrics(out)[-1]["val_windows"] == (111_540 - 1) // 32


# --- compute budget ----------------------------------------------------------------------------------


def test_time_budget_stops_validated_and_resumes_exactly_with_a_larger_one(tmp_path, data):
    """A run that spent its budget stops after that step with a validation and a checkpoint; the
    clocks are kept across resume, and a larger budget continues the run as if never stopped."""
    cfg = tiny_config(steps=8, eval_every=4)
    get_batch = shakespeare.batch_fn(data, cfg)
    Trainer(tiny_model(), get_batch, cfg, tmp_path / "full").fit()

    run = tmp_path / "budget"
    short = tiny_config(steps=8, eval_every=4, time_budget=1e-9, budget_clock="cpu_time")  # spent by the first step
    trainer = Trainer(tiny_model(), get_batch, short, run)
    record = trainer.fit()
    assert record["step"] == 1 and record["budget_stop"] and record["budget"] == [1e-9, "cpu_time"] and "val_loss" in record
    assert load_checkpoint(run / CHECKPOINT)["step"] == 1
    assert load_checkpoint(run / CHECKPOINT)["cpu_time"] == trainer.cpu_time > 0
    again = Trainer(tiny_model(), get_batch, short, run)
    again.resume()
    assert again.fit()["step"] == 1  # the same budget: nothing left to train

    longer = tiny_config(steps=8, eval_every=4, time_budget=1e6, budget_clock="cpu_time")
    resumed = Trainer(tiny_model(seed=5), get_batch, longer, run)
    resumed.resume()
    assert resumed.cpu_time == trainer.cpu_time and resumed.elapsed == trainer.elapsed
    assert resumed.fit()["step"] == 8
    a, b = read_metrics(tmp_path / "full"), read_metrics(run)
    assert [r["step"] for r in b] == list(range(1, 9))
    assert [r["train_loss"] for r in b] == pytest.approx([r["train_loss"] for r in a], rel=1e-6)
    assert b[-1]["val_loss"] == pytest.approx(a[-1]["val_loss"], rel=1e-6)
    cpu = [r["cpu_time"] for r in b]
    assert cpu == sorted(cpu) and all("tok_s" in r and "time" in r and "wall" in r for r in b)


def test_cli_time_budget_ends_the_run_and_a_larger_one_extends_it(tmp_path, capsys):
    out = tmp_path / "run"
    flags = [*TINY_FLAGS, "--steps", "6", "--eval-every", "3"]
    assert main(["train", "shakespeare", "--out", str(out), *flags, "--time-budget", "1e-9", "--budget-clock", "wall"]) == 0
    assert "done: step 1 (time budget spent)" in capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert result["stopped"] == "time_budget" and result["step"] == 1
    assert main(["train", "shakespeare", "--out", str(out), "--resume"]) == 0
    assert "already ended" in capsys.readouterr().out  # the same budget: nothing to do
    assert main(["train", "shakespeare", "--out", str(out), "--resume", "--time-budget", "0"]) == 0  # no budget
    assert [r["step"] for r in read_metrics(out)] == list(range(1, 7))
    assert json.loads((out / "result.json").read_text())["stopped"] == "finished"
