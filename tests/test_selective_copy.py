"""Selective copying: the generator's exact format, the task's loss/metrics, the CLI, and a tiny run that learns."""

from __future__ import annotations

import json

import pytest
import torch

from minrnn.cli import main
from minrnn.data.selective_copy import MARKER, noise_token, selective_copy_batch
from minrnn.models.lm import LMConfig, MinRNNLM
from minrnn.tasks import TASKS
from minrnn.tasks import selective_copy as sc
from minrnn.tasks.ablation import markdown, summarize
from minrnn.tasks.base import run_config, run_task
from minrnn.train.config import TrainConfig


def _gen(seed: int | None = None) -> torch.Generator:
    return torch.Generator().manual_seed(int(torch.randint(2**31, ())) if seed is None else seed)


# ----------------------------------------------------------------------------- generator format


@pytest.mark.parametrize(
    "B, L, K, V",
    [(64, 4096, 16, 16), (7, 40, 16, 16), (5, 16, 16, 16), (3, 1, 1, 3), (9, 33, 5, 7)],
)
def test_format(B, L, K, V):
    x, y = selective_copy_batch(B, L, K, V, _gen())
    noise = noise_token(V)
    assert x.shape == (B, L + K) and y.shape == (B, K)
    assert x.dtype == torch.int64 and y.dtype == torch.int64
    # Markers (0) at exactly the last K positions.
    assert (x[:, L:] == MARKER).all()
    assert (x[:, :L] != MARKER).all()
    # Data tokens from 1 .. V - 2, never the noise token.
    assert ((y >= 1) & (y <= V - 2)).all()
    body = x[:, :L]
    is_data = body != noise
    # Exactly K data positions per row: the positions are distinct (a collision would leave fewer).
    assert (is_data.sum(1) == K).all()
    for b in range(B):
        # Targets = the data tokens in the order they appear.
        assert torch.equal(body[b][is_data[b]], y[b])


def test_positions_are_spread_over_the_sequence():
    # Uniform distinct positions: every position gets used, and the mean sits near the middle.
    L, K = 64, 16
    x, _ = selective_copy_batch(2000, L, K, 16, _gen())
    is_data = (x[:, :L] != noise_token(16)).float()
    per_position = is_data.mean(0)  # expected K / L = 0.25 everywhere
    assert per_position.min() > 0.18 and per_position.max() < 0.32
    # Data tokens cover the whole range 1..14, roughly uniformly.
    counts = torch.bincount(x[:, :L][x[:, :L] != 15], minlength=16)
    assert counts[0] == 0 and counts[15] == 0
    assert counts[1:15].min() > 0.8 * counts[1:15].float().mean()


def test_seeded_reproducibility():
    seed = int(torch.randint(2**31, ()))
    a = selective_copy_batch(8, 100, 16, 16, _gen(seed))
    b = selective_copy_batch(8, 100, 16, 16, _gen(seed))
    c = selective_copy_batch(8, 100, 16, 16, _gen(seed + 1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # A generator yields fresh batches on each call.
    g = _gen(seed)
    assert not torch.equal(selective_copy_batch(8, 100, 16, 16, g)[0], selective_copy_batch(8, 100, 16, 16, g)[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(n_tokens=0), "n_tokens"),
        (dict(length=8, n_tokens=16), "length"),
        (dict(vocab_size=2), "vocab_size"),
        (dict(length=16.0), "length"),
        (dict(n_tokens=True), "n_tokens"),
    ],
)
def test_validation(kwargs, match):
    args = dict(batch_size=2, length=64, n_tokens=16, vocab_size=16) | kwargs
    with pytest.raises(ValueError, match=match):
        selective_copy_batch(**args)


# ----------------------------------------------------------------------------- the task


def test_paper_preset_is_the_papers_model():
    model_cfg, train_cfg, task_cfg = sc.configs("paper")
    assert (model_cfg.vocab_size, model_cfg.d_model, model_cfg.n_layers, model_cfg.expansion) == (16, 64, 3, 6.0)
    assert (model_cfg.dropout, model_cfg.conv_kernel, model_cfg.mlp_ratio) == (0.1, 0, 0.0)
    assert (train_cfg.batch_size, train_cfg.grad_clip, train_cfg.lr, train_cfg.steps) == (64, 1.0, 1e-4, 400_000)
    assert (task_cfg.length, task_cfg.n_tokens) == (4096, 16)
    # No conv and no MLP in the blocks.
    model = MinRNNLM(model_cfg)
    assert all(block.conv is None and block.mlp is None for block in model.blocks)
    # configs() hands out copies: editing one leaves the preset alone.
    model_cfg.n_layers = 1
    assert sc.configs("paper")[0].n_layers == 3
    with pytest.raises(ValueError, match="preset"):
        sc.configs("nope")


def test_loss_and_accuracy_use_only_the_marker_outputs():
    model = MinRNNLM(LMConfig(vocab_size=16, d_model=16, n_layers=1, expansion=1.0, dropout=0.0, conv_kernel=0, mlp_ratio=0))
    x, y = selective_copy_batch(4, 20, 5, 16, _gen())
    logits, _ = model(x)
    expected = torch.nn.functional.cross_entropy(logits[:, -5:].reshape(-1, 16), y.reshape(-1))
    torch.testing.assert_close(sc.copy_loss(model, x, y), expected)
    acc = sc.copy_metrics(model, x, y)["accuracy"]
    assert acc == pytest.approx((logits[:, -5:].argmax(-1) == y).float().mean().item())

    # A model that outputs the right token at the markers scores 1, whatever it does elsewhere.
    class Oracle(torch.nn.Module):
        def forward(self, idx):
            logits = torch.randn(*idx.shape, 16)
            logits[:, -5:] = torch.nn.functional.one_hot(y, 16).float() * 100
            return logits, None

    assert sc.copy_metrics(Oracle(), x, y)["accuracy"] == 1.0
    assert sc.copy_loss(Oracle(), x, y).item() < 1e-6


def test_registry_and_cli_parse():
    assert set(TASKS) >= {"shakespeare", "selective-copy"}
    for task in TASKS.values():
        assert task.DEFAULT_PRESET in task.PRESETS
        for name in task.PRESETS:
            assert len(task.configs(name)) == 3


def _tiny(tmp_path, steps=300, **task):
    model_cfg = LMConfig(vocab_size=16, d_model=32, n_layers=2, expansion=2.0, dropout=0.0, conv_kernel=0, mlp_ratio=0)
    train_cfg = TrainConfig(steps=steps, batch_size=64, lr=5e-3, weight_decay=0.0, grad_clip=1.0, eval_every=50, eval_iters=2, seed=int(torch.randint(1000, ())))
    task_cfg = sc.TaskConfig(**({"length": 32, "n_tokens": 4, "stop_accuracy": 0.99, "test_batches": 10} | task))
    return model_cfg, train_cfg, task_cfg


def _learns(tmp_path, steps, **task):
    model_cfg, train_cfg, task_cfg = _tiny(tmp_path, steps=steps, **task)
    result = run_task(sc, run_config(sc, "selective-copy", "test", model_cfg.to_dict(), train_cfg, task_cfg, "mingru"), tmp_path)
    assert result["test_accuracy"] >= 0.95, result
    # Early stop fired, and was recorded where the run's files say so.
    assert result["early_stop"] and result["step"] < train_cfg.steps
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["early_stop"] and records[-1]["val_accuracy"] >= 0.99
    assert json.loads((tmp_path / "result.json").read_text())["test_accuracy"] == result["test_accuracy"]


def test_tiny_configuration_learns(tmp_path):
    """Length 16, 2 data tokens, a 2-layer minGRU of width 32: copies in a few hundred steps (seconds)."""
    _learns(tmp_path, steps=1500, length=16, n_tokens=2)


@pytest.mark.slow
def test_small_configuration_learns(tmp_path):
    """Length 32, 4 data tokens: about 1000 steps (half a minute of CPU)."""
    _learns(tmp_path, steps=3000, length=32, n_tokens=4)


def test_run_is_reproducible_from_its_seed(tmp_path):
    # The seed fixes everything, the initial weights included, whatever ran before in the process.
    results = []
    for name in ("a", "b"):
        torch.randn(7)  # move the global RNG between the runs
        model_cfg, train_cfg, task_cfg = _tiny(tmp_path, steps=3)
        train_cfg.seed = 5
        run_task(sc, run_config(sc, "selective-copy", "test", model_cfg.to_dict(), train_cfg, task_cfg, "mingru"), tmp_path / name)
        results.append((tmp_path / name / "metrics.jsonl").read_text().splitlines())
    losses = [[json.loads(line)["train_loss"] for line in lines] for lines in results]
    assert losses[0] == losses[1]


def test_untrained_model_is_near_chance(tmp_path):
    # The accuracy measure is not trivially high: an untrained model scores near 1/14.
    model_cfg, train_cfg, task_cfg = _tiny(tmp_path)
    model = MinRNNLM(model_cfg)
    assert sc.test_accuracy(model, model_cfg.vocab_size, train_cfg, task_cfg) < 0.3


def test_cli_train_and_ablate(tmp_path, capsys):
    common = ["--length", "16", "--n-tokens", "2", "--steps", "4", "--batch-size", "4", "--eval-every", "2", "--eval-iters", "1", "--test-batches", "1"]
    assert main(["train", "selective-copy", "--model", "minlstm", "--layers", "1", "--d-model", "8", "--out", str(tmp_path / "run"), *common]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["cell"] == "minlstm" and config["model"]["n_layers"] == 1
    assert config["task_config"]["length"] == 16 and config["train"]["context"] == 18
    assert "test_accuracy" in capsys.readouterr().out

    out = tmp_path / "abl"
    assert main(["ablate", "selective-copy", "--cells", "mingru,minlstm", "--layers", "1,2", "--seeds", "2", "--out", str(out), *common]) == 0
    payload = json.loads((out / "ablation.json").read_text())
    assert len(payload["runs"]) == 2 * 2 * 2
    assert {(r["cell"], r["layers"]) for r in payload["runs"]} == {(c, n) for c in ("mingru", "minlstm") for n in (1, 2)}
    assert all(e["n"] == 2 for e in payload["table"].values())
    assert "minlstm" in (out / "ablation.md").read_text()
    # Rerunning resumes: finished runs are read back, not retrained.
    mtime = (out / "mingru-L1-s1337" / "metrics.jsonl").stat().st_mtime_ns
    assert main(["ablate", "selective-copy", "--cells", "mingru,minlstm", "--layers", "1,2", "--seeds", "2", "--out", str(out), *common]) == 0
    assert (out / "mingru-L1-s1337" / "metrics.jsonl").stat().st_mtime_ns == mtime
    # ... also when the run predates a TrainConfig field (its default is what it ran with).
    config_path = out / "mingru-L1-s1337" / "config.json"
    old = json.loads(config_path.read_text())
    del old["train"]["patience"]
    config_path.write_text(json.dumps(old))
    assert main(["ablate", "selective-copy", "--cells", "mingru", "--layers", "1", "--seeds", "1", "--out", str(out), *common]) == 0
    assert (out / "mingru-L1-s1337" / "metrics.jsonl").stat().st_mtime_ns == mtime

    assert main(["ablate", "selective-copy", "--layers", "1,x", "--out", str(out)]) == 2


def test_summary_table():
    runs = [
        {"cell": "mingru", "layers": 1, "test_accuracy": 0.5},
        {"cell": "mingru", "layers": 1, "test_accuracy": 0.7},
        {"cell": "mingru", "layers": 3, "test_accuracy": 0.99},
    ]
    table = summarize(runs, ["mingru", "minlstm"], [1, 3])
    assert table["mingru/1"]["mean"] == pytest.approx(0.6)
    assert table["mingru/1"]["std"] == pytest.approx(0.1414213, rel=1e-5)
    assert table["mingru/3"]["n"] == 1 and table["mingru/3"]["std"] is None
    assert table["minlstm/1"]["n"] == 0
    md = markdown(table, ["mingru", "minlstm"], [1, 3], "t")
    assert "60.0 ± 14.1 (n=2)" in md and "99.0 (n=1)" in md and "–" in md
