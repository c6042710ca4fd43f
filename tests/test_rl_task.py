"""`minrnn train rl` / `eval rl` / `data` / `ablate rl` end to end on a tiny Pendulum dataset."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium", reason="the rl extra (pip install 'minrnn[rl]') is not installed")
pytest.importorskip("h5py", reason="the rl extra (pip install 'minrnn[rl]') is not installed")

from minrnn.cli import main  # noqa: E402
from minrnn.rl import pendulum  # noqa: E402
from minrnn.rl.data import write_d4rl_hdf5  # noqa: E402
from minrnn.tasks import rl  # noqa: E402
from minrnn.train.checkpoint import CHECKPOINT, load_checkpoint  # noqa: E402

TINY = ["--d-model", "8", "--n-layers", "1", "--context", "3", "--batch-size", "4", "--eval-every", "2", "--eval-iters", "1",
        "--warmup-steps", "1", "--max-ep-len", "12"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return pendulum.make_dataset("medium", tmp_path_factory.mktemp("data") / "pendulum-medium-v0.hdf5", episodes=3, refs=(-1200.0, -150.0))


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_and_eval_rl_from_the_cli(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    args = ["train", "rl", "--data", str(data_file), "--env", "Pendulum-v1", "--model", "minlstm", "--steps", "4", "--out", str(out)]
    assert main([*args, *TINY, "--eval-episodes", "2"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["step"] == 4 and result["eval_target"] == -150.0  # the dataset's expert reference
    assert np.isfinite(result["eval_normalized"]) and result["data_return"] < -150
    ckpt = load_checkpoint(out / CHECKPOINT)
    info = ckpt["rl"]
    assert info["env_id"] == "Pendulum-v1" and info["refs"] == [-1200.0, -150.0] and info["normalizer"]["scale"] == 100.0
    assert info["normalizer"]["action_low"] == [-2.0] and len(info["normalizer"]["state_mean"]) == 3
    assert ckpt["config"]["model"]["backbone"] == "minlstm" and ckpt["config"]["model"]["context"] == 3
    window = json.loads((out / "eval-latest-window.json").read_text())
    assert window["results"][0]["lengths"] == [12, 12]

    capsys.readouterr()
    assert main(["eval", "rl", str(out), "--episodes", "3", "--mode", "recurrent", "--targets=-300,-600", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "target -300: return" in printed and "normalised" in printed
    scores = json.loads((out / "eval-latest-recurrent.json").read_text())
    assert [r["target"] for r in scores["results"]] == [-300.0, -600.0] and scores["step"] == 4
    assert len(scores["results"][1]["returns"]) == 3


def test_rl_resume_is_exact(tmp_path, data_file):
    base = ["train", "rl", "--data", str(data_file), "--model", "mingru", "--dropout", "0.1", *TINY]
    assert main([*base, "--steps", "6", "--out", str(tmp_path / "full")]) == 0
    assert main([*base, "--steps", "2", "--out", str(tmp_path / "split")]) == 0
    assert main(["train", "rl", "--resume", "--steps", "6", "--out", str(tmp_path / "split")]) == 0
    a, b = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "split")
    assert [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-6)
    wa, wb = load_checkpoint(tmp_path / "full" / CHECKPOINT)["model"], load_checkpoint(tmp_path / "split" / CHECKPOINT)["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-6, atol=1e-6)


def test_unusable_data_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.hdf5"
    rng = np.random.default_rng(0)
    write_d4rl_hdf5(bad, rng.normal(size=(10, 3)), rng.normal(size=(10, 2)), rng.normal(size=10), np.zeros(10), np.r_[np.zeros(9), 1])
    assert main(["train", "rl", "--data", str(bad), "--env", "Pendulum-v1", "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("minrnn: error: ") and "bad.hdf5: key 'actions' has 2 dimensions" in err
    assert main(["train", "rl", "--data", str(tmp_path / "none.hdf5"), "--env", "Pendulum-v1", "--out", str(tmp_path / "r")]) == 2
    assert "none.hdf5: no such file" in capsys.readouterr().err
    assert main(["train", "rl", "--data", str(bad), "--out", str(tmp_path / "r")]) == 2  # no env recorded, none given
    assert "pass --env" in capsys.readouterr().err
    assert main(["train", "rl", "--data", str(bad), "--env", "Pendulum-v1", "--model", "transformer", "--expansion", "3", "--out", str(tmp_path / "r")]) == 2
    assert "--expansion does not apply to --model transformer" in capsys.readouterr().err
    assert main(["data", "inspect", str(bad), "--env", "Pendulum-v1"]) == 2


def test_data_inspect(data_file, capsys):
    assert main(["data", "inspect", str(data_file), "--env", "Pendulum-v1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 3 and summary["env_id"] == "Pendulum-v1" and summary["ref_scores"] == [-1200.0, -150.0]


@pytest.mark.slow  # measures the references: 200 Pendulum episodes
def test_data_make(tmp_path, capsys):
    assert main(["data", "make", "--out", str(tmp_path), "--datasets", "expert,medium-expert", "--episodes", "2"]) == 0
    assert "pendulum-medium-expert-v0.hdf5: 4 episodes, 800 steps" in capsys.readouterr().out
    summary = rl.load(str(tmp_path / "pendulum-expert-v0.hdf5"), 1000).summary()
    assert summary["episodes"] == 2 and summary["ref_scores"][0] < -1000 < -250 < summary["ref_scores"][1]


def test_paper_preset_takes_the_papers_per_dataset_settings(tmp_path):
    from minrnn.tasks.base import fresh_run_config

    assert rl.dataset_name("hopper_medium-replay-v2.hdf5") == ("hopper", "medium-replay")
    assert rl.dataset_name("minari:mujoco/walker2d/medium-v0") == ("walker2d", "medium")
    assert rl.paper_settings("hopper-medium-v2.pkl") == {"d_model": 256, "lr": 1e-4}
    assert rl.paper_settings("walker2d_medium-v2.hdf5") == {"lr": 1e-4}
    assert rl.paper_settings("halfcheetah_medium-expert-v2.hdf5") == {}
    # a D4RL-named file (here a small local one) under the paper preset; flags still win
    rng = np.random.default_rng(0)
    path = tmp_path / "hopper_medium-v2.hdf5"
    write_d4rl_hdf5(path, rng.normal(size=(40, 11)), rng.uniform(-1, 1, size=(40, 3)), rng.normal(size=40), np.zeros(40), np.arange(40) % 20 == 19)
    config = fresh_run_config(rl, "rl", "paper", {"data": str(path), "env": "Hopper-v5"}, "minlstm")
    assert config["model"]["d_model"] == 256 and config["train"]["lr"] == 1e-4 and config["train"]["warmup_steps"] == 10_000
    assert config["model"]["state_dim"] == 11 and config["model"]["max_ep_len"] == 1000
    config = fresh_run_config(rl, "rl", "paper", {"data": str(path), "env": "Hopper-v5", "d_model": 64}, "transformer")
    assert config["model"]["d_model"] == 64 and config["model"]["n_heads"] == 1
    info = rl.run_info(rl.TaskConfig(data=str(path), env="Hopper-v5"), rl.load(str(path), 1000))
    assert info["targets"] == [3600.0, 1800.0] and info["refs"] == (-20.272305, 3234.3)  # DT's and D4RL's


@pytest.mark.slow
def test_ablate_rl_tabulates(tmp_path, data_file, capsys):
    out = tmp_path / "bench"
    args = ["ablate", "rl", "--datasets", str(data_file), "--models", "mingru,transformer", "--seeds", "2", "--steps", "2",
            "--eval-episodes", "2", "--out", str(out), *TINY]
    assert main(args) == 0
    payload = json.loads((out / "ablation.json").read_text())
    row = payload["table"]["pendulum-medium-v0"]
    assert row["models"]["mingru"]["n"] == 2 and row["models"]["transformer"]["normalized_std"] is not None
    assert "| pendulum-medium-v0 |" in (out / "ablation.md").read_text()
    assert main(args) == 0  # finished runs are read back, not retrained


def test_recurrent_evaluation_needs_a_recurrent_backbone():
    from minrnn.models import build_model
    from minrnn.models.registry import model_config

    arch, cfg = model_config("transformer", {"state_dim": 3, "act_dim": 1, "d_model": 8, "n_layers": 1, "dropout": 0.0}, 3, family="decision")
    info = {"env_id": "Pendulum-v1", "targets": [-150.0], "refs": None, "max_ep_len": 5,
            "normalizer": {"state_mean": [0.0] * 3, "state_std": [1.0] * 3, "action_low": [-2.0], "action_high": [2.0], "scale": 100.0}}
    with pytest.raises(ValueError, match="recurrent evaluation needs a recurrent backbone"):
        rl.evaluate_model(build_model(arch, cfg), info, 1, "recurrent", context=3, progress=False)
    result = rl.evaluate_model(build_model(arch, cfg), info, 2, "window", context=3, progress=False)
    assert result["results"][0]["lengths"] == [5, 5] and "normalized_mean" not in result["results"][0]
