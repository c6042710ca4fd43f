"""The Mamba baseline (`minrnn.models.mamba`, on mambapy): its parallel forward is mambapy's, from
any state; the recurrent step is mambapy's own; training resumes exactly; the CLI trains, samples
and ablates it; without mambapy it is a one-line install hint. Step == parallel for every kind is
in test_generation.py, API misuse in test_model_api_errors.py."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from minrnn.cli import main
from minrnn.models import MambaConfig, build_model
from tests.helpers import needs_mambapy

TINY = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--context", "32", "--eval-every", "2", "--eval-iters", "2"]


def tiny(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model("mamba", MambaConfig(**{"vocab_size": 11, "d_model": 12, "n_layers": 2, "d_state": 5, "dropout": 0.0, **kw}).to_dict())


@needs_mambapy
@pytest.mark.parametrize("T", [1, 2, 7, 16, 23])
def test_forward_is_mambapys_forward_values_and_grads(T):
    """Our forward (which carries the state) against mambapy's own Mamba.forward, float64."""
    model = tiny().double()
    idx = torch.randint(0, 11, (3, T))
    ours, _ = model(idx)
    ref = model.head(model.norm(model.mamba(model.embed(idx))))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * g).sum(), list(model.parameters()))
    ref_grads = torch.autograd.grad((ref * g).sum(), list(model.parameters()))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@needs_mambapy
@pytest.mark.parametrize("cuts", [(1,), (2,), (1, 2, 3), (5, 11)])
def test_chunks_shorter_than_the_conv_carry_the_state(cuts):
    """Chunks of 1, 2, 3 tokens (shorter than the conv's d_conv - 1 = 3 cached inputs) and longer ones."""
    model = tiny(d_conv=4).double().eval()
    idx = torch.randint(0, 11, (2, 20))
    with torch.no_grad():
        full, _ = model(idx)
        pieces, state, start = [], None, 0
        for end in (*cuts, 20):
            out, state = model(idx[:, start:end], state)
            pieces.append(out)
            start = end
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-10, atol=1e-10)


@needs_mambapy
def test_paper_preset_size():
    from minrnn.tasks import shakespeare
    from minrnn.tasks.base import fresh_run_config

    config = fresh_run_config(shakespeare, "shakespeare", "paper", {}, "mamba")
    assert config["model"] == {"vocab_size": 65, "d_model": 384, "n_layers": 6, "d_state": 16, "expand": 2, "d_conv": 4, "dropout": 0.2}
    model = build_model(config["arch"], config["model"])
    assert sum(p.numel() for p in set(model.parameters())) == 5_835_648


def test_missing_mambapy_is_an_install_hint(monkeypatch, tmp_path, capsys):
    for name in ("mambapy", "mambapy.mamba", "mambapy.pscan"):
        monkeypatch.setitem(sys.modules, name, None)  # import mambapy now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'minrnn\[mamba\]'"):
        build_model("mamba", MambaConfig(vocab_size=11, d_model=8, n_layers=1).to_dict())
    capsys.readouterr()
    assert main(["train", "shakespeare", "--model", "mamba", "--out", str(tmp_path / "run"), "--steps", "1", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minrnn: error: --model mamba needs the `mambapy` package") and err.count("\n") == 1, err


@needs_mambapy
def test_training_resumes_exactly(tmp_path, capsys):
    """2 steps, then --resume to 4, equals 4 steps in one go (a constant lr: the schedule does not
    depend on --steps), dropout on."""
    flags = ["train", "shakespeare", "--model", "mamba", *TINY, "--dropout", "0.1", "--lr-schedule", "constant", "--warmup-steps", "0"]
    assert main([*flags, "--out", str(tmp_path / "full"), "--steps", "4"]) == 0
    assert main([*flags, "--out", str(tmp_path / "split"), "--steps", "2"]) == 0
    assert main(["train", "shakespeare", "--out", str(tmp_path / "split"), "--resume", "--steps", "4"]) == 0
    read = lambda run: [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    full, split = read("full"), read("split")
    assert [r["step"] for r in split] == [1, 2, 3, 4]
    for a, b in zip(full, split):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-6)
        assert ("val_loss" in a) == ("val_loss" in b) and b.get("val_loss", 0.0) == pytest.approx(a.get("val_loss", 0.0), rel=1e-6)


@needs_mambapy
def test_cli_trains_samples_and_ablates(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "shakespeare", "--model", "mamba", "--out", str(out), *TINY, "--steps", "2", "--d-state", "4"]) == 0
    assert "mamba: " in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["model"]["d_state"] == 4
    assert main(["sample", str(out), "--tokens", "20", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out) == len("\n") + 20 + 1
    grid = tmp_path / "grid"
    assert main(["ablate", "selective-copy", "--cells", "mingru,mamba", "--layers", "1", "--seeds", "1", "--out", str(grid),
                 "--steps", "2", "--length", "8", "--n-tokens", "2", "--batch-size", "2", "--eval-iters", "1", "--test-batches", "1"]) == 0
    table = json.loads((grid / "ablation.json").read_text())["table"]
    assert table["mamba/1"]["n"] == 1 and 0.0 <= table["mamba/1"]["mean"] <= 1.0
    assert "| mamba |" in (grid / "ablation.md").read_text()
