"""End to end through the CLI: train a tiny model, read its metrics, sample from it."""

import json
import subprocess
import sys

from minrnn.cli import main

TINY = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--context", "32", "--eval-every", "2", "--eval-iters", "2"]


def test_train_then_sample(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "shakespeare", "--model", "minlstm", "--steps", "4", "--out", str(run), *TINY]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all("train_loss" in r for r in records)
    assert [r["step"] for r in records if "val_loss" in r] == [2, 4]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["cell"] == "minlstm" and config["model"]["d_model"] == 16
    assert (run / "ckpt.safetensors").is_file()

    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "ROMEO:", "--tokens", "25", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("ROMEO:") and len(first.rstrip("\n")) >= len("ROMEO:") + 20
    assert main(["sample", str(run), "--prompt", "ROMEO:", "--tokens", "25", "--seed", "3"]) == 0
    assert capsys.readouterr().out == first  # seeded sampling is reproducible


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    (tmp_path / "ckpt.safetensors").write_bytes(b"garbage")
    assert main(["sample", str(tmp_path)]) == 2
    assert "not a readable minrnn checkpoint" in capsys.readouterr().err


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "minrnn", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "sample" in out.stdout


def test_report_tabulates_runs_beside_the_paper(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "shakespeare", "--steps", "4", "--out", str(run), *TINY]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = min((r for r in records if "val_loss" in r), key=lambda r: r["val_loss"])
    assert main(["report", str(run), "--out", str(tmp_path / "table")]) == 0
    (row,) = json.loads((tmp_path / "table.json").read_text())["runs"]
    assert (row["kind"], row["steps"], row["finished"], row["early_stop"]) == ("mingru", 4, True, False)
    assert (row["best_val_loss"], row["best_step"]) == (best["val_loss"], best["step"])
    assert row["val_curve"] == [[r["step"], r["val_loss"]] for r in records if "val_loss" in r]
    assert row["wall_s"] == records[-1]["wall"] and "CPU threads" in row["hardware"]
    assert row["paper_val_loss"] is None  # the small preset is not the paper's
    assert f"| mingru | {row['parameters'] / 1e6:.2f}M | {best['val_loss']:.4f} |" in (tmp_path / "table.md").read_text()

    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "preset": "paper"}))  # the paper's columns
    assert main(["report", str(run), "--out", str(tmp_path / "table")]) == 0
    (row,) = json.loads((tmp_path / "table.json").read_text())["runs"]
    assert (row["paper_val_loss"], row["paper_best_step"]) == (1.548, 575)

    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "t2")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_flags_that_do_not_apply_or_make_no_sense_are_refused(tmp_path, capsys):
    out = str(tmp_path / "run")
    cases = [
        (["--model", "gru", "--expansion", "4"], "--expansion does not apply to --model gru"),
        (["--model", "mingru", "--n-heads", "4"], "--n-heads does not apply to --model mingru"),
        (["--model", "mingru", "--cell", "minlstm"], "--cell minlstm contradicts --model mingru"),
        (["--n-layers", "0"], "n_layers must be > 0"),
        (["--layers", "-3"], "n_layers must be > 0"),
        (["--conv-kernel", "-2"], "conv_kernel must be >= 0"),
        (["--d-model", "-5"], "d_model must be > 0"),
        (["--device", "foo"], "unknown device 'foo'"),
        (["--backend", "nope"], "unknown backend 'nope'"),
    ]
    for flags, message in cases:
        assert main(["train", "shakespeare", "--steps", "1", "--out", out, *TINY, *flags]) == 2, flags
        assert message in capsys.readouterr().err, flags


def test_backend_flag_sets_the_layers_backend(tmp_path, monkeypatch):
    from minrnn.train import trainer as trainer_module

    seen = []
    fit = trainer_module.Trainer.fit
    monkeypatch.setattr(trainer_module.Trainer, "fit", lambda self: seen.append([b.rnn.backend for b in self.model.blocks]) or fit(self))
    assert main(["train", "shakespeare", "--steps", "1", "--out", str(tmp_path / "r"), *TINY, "--backend", "torch"]) == 0
    assert seen == [["torch"]]
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train"]["backend"] == "torch"
