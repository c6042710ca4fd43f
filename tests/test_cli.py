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


def test_report_time_to_loss_and_loss_at_a_common_time(tmp_path, capsys):
    """Time columns on either clock, the first validation at or below each target ("not reached"
    otherwise), the best validation loss within --at-time, and a run cut short by its budget."""
    run = tmp_path / "run"
    assert main(["train", "shakespeare", "--steps", "4", "--out", str(run), *TINY, "--eval-every", "1"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r, loss, t in zip(records, [1.9, 1.58, 1.62, 1.57], [10.0, 20.0, 30.0, 40.0]):
        r.update(val_loss=loss, time=t, cpu_time=2 * t, tokens=100)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text(json.dumps({**result, "stopped": "time_budget"}))

    assert main(["report", str(run), "--out", str(tmp_path / "t"), "--at-time", "25"]) == 0
    (row,) = json.loads((tmp_path / "t.json").read_text())["runs"]
    assert row["time_to_loss"] == {"1.6": {"step": 2, "time_s": 20.0}, "1.55": None}
    assert (row["best_val_loss"], row["best_step"], row["best_time_s"]) == (1.57, 4, 40.0)
    assert row["tokens_per_s"] == 400 / 40.0 and row["at_time"]["best_val_loss"] == 1.58 and not row["at_time"]["short"]
    table = (tmp_path / "t.md").read_text()
    assert "| time to 1.6 | time to 1.55 | best val loss by 0.4 min |" in table
    assert "| 0.3 min (step 2) | not reached | 1.5800 |" in table and "(time budget)" in table
    assert "20 random batches" not in table and "2 random batches of 4" in table

    assert main(["report", str(run), "--out", str(tmp_path / "c"), "--clock", "cpu_time", "--at-time", "100",
                 "--time-to-loss", "1.58"]) == 0
    (row,) = json.loads((tmp_path / "c.json").read_text())["runs"]
    assert row["time_to_loss"] == {"1.58": {"step": 2, "time_s": 40.0}} and row["best_time_s"] == 80.0
    assert row["at_time"]["short"]  # stopped by its budget at 80 s, before 100 s
    assert "– (ran 1.3 min)" in (tmp_path / "c.md").read_text() and "process CPU clock" in (tmp_path / "c.md").read_text()

    # the validation that ended a 75 s budget (at 80 s, past it by part of a step) counts as at 75 s
    records[-1].update(budget_stop=True, budget=[75.0, "cpu_time"])
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["report", str(run), "--out", str(tmp_path / "b"), "--clock", "cpu_time", "--at-time", "75"]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["runs"][0]["at_time"]["best_val_loss"] == 1.57
    assert main(["report", str(run), "--out", str(tmp_path / "b"), "--clock", "wall", "--at-time", "35"]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["runs"][0]["at_time"]["best_val_loss"] == 1.58  # another clock
