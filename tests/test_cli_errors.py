"""Bad input through the CLI, flag by flag: every flag of every subcommand given a value that makes
no sense, and every kind of broken run folder or checkpoint, ends with exit code 2 and one line
``minrnn: error: ...`` (or argparse's usage line and error, for a value of the wrong type) that names
the problem, never a traceback. `test_every_flag_has_a_case` keeps the table complete."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from minrnn.cli import build_parser, main
from minrnn.train.checkpoint import BEST, CHECKPOINT, load_checkpoint, save_checkpoint
from tests.helpers import HAS_MAMBAPY

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--context", "32", "--eval-every", "2", "--eval-iters", "2"]
HUGE = str(2**64)  # no 64-bit seed
RL_TINY = ["--d-model", "8", "--n-layers", "1", "--context", "3", "--batch-size", "4", "--eval-every", "1", "--eval-iters", "1", "--max-ep-len", "12"]

# What each subcommand's cases start from: {out} is a fresh path, {run} a finished tiny run.
BASE = {
    ("train", "shakespeare"): ["train", "shakespeare", "--out", "{out}", "--steps", "1", *TINY],
    ("train", "selective-copy"): ["train", "selective-copy", "--out", "{out}", "--steps", "1", "--length", "8", "--n-tokens", "2",
                                  "--batch-size", "2", "--eval-iters", "1", "--test-batches", "1"],
    ("ablate", "selective-copy"): ["ablate", "selective-copy", "--out", "{out}", "--steps", "1", "--seeds", "1", "--layers", "1", "--cells", "mingru",
                  "--length", "8", "--n-tokens", "2", "--batch-size", "2", "--eval-iters", "1", "--test-batches", "1"],
    ("train", "text"): ["train", "text", "--data", "{text}", "--out", "{out}", "--steps", "1", *TINY],
    ("sample",): ["sample", "{run}", "--tokens", "3"],
    ("convert", "lucidrains"): ["convert", "lucidrains", "{lucid}", "--out", "{out}"],
    ("report",): ["report", "{run}", "--out", "{out}"],
    ("bench", "runtime"): ["bench", "runtime", "--seq-lens", "8", "--batch", "2", "--d-in", "4", "--d-h", "4", "--models", "mingru",
                           "--repeats", "1", "--threads", "1", "--memory", "none", "--no-plot", "--out", "{out}"],
    ("train", "rl"): ["train", "rl", "--data", "{rldata}", "--out", "{out}", "--steps", "1", *RL_TINY],
    ("ablate", "rl"): ["ablate", "rl", "--datasets", "{rldata}", "--out", "{out}", "--steps", "1", "--seeds", "1", "--models", "mingru", *RL_TINY],
    ("eval", "rl"): ["eval", "rl", "{rlrun}", "--episodes", "1", "--no-progress"],
    ("data", "make"): ["data", "make", "--out", "{out}", "--datasets", "medium", "--episodes", "1"],
    ("data", "inspect"): ["data", "inspect", "{rldata}"],
    ("bench", "scan"): ["bench", "scan", "--batch", "2", "--seq-len", "8", "--hidden", "4", "--ops", "linear_scan", "--backends", "torch",
                        "--repeats", "1", "--threads", "1", "--copy-mib", "1", "--out", "{out}"],
    ("bench", "generate"): ["bench", "generate", "--kinds", "mingru", "--batches", "1", "--contexts", "4", "--threads", "1",
                            "--tokens", "1", "--warmup", "0", "--d-model", "12", "--n-layers", "1", "--no-plot", "--out", "{out}"],
}

# Flags of the model config: every `minrnn train TASK` has them.
MODEL_CASES = [
    (["--d-model", "-5"], "d_model must be > 0"),
    (["--n-layers", "0"], "n_layers must be > 0"),
    (["--layers", "-3"], "n_layers must be > 0"),
    (["--layers", "x"], "invalid int value"),
    (["--dropout", "1.5"], "dropout must be in [0, 1)"),
    (["--cell", "nope"], "unknown model kind 'nope'"),
    (["--expansion", "nan"], "expansion must be > 0"),
    (["--conv-kernel", "-2"], "conv_kernel must be >= 0"),
    (["--mlp-ratio", "inf"], "mlp_ratio must be >= 0"),
    (["--norm", "nope"], "norm must be one of"),
    (["--activation", "nope"], "activation must be one of"),
    (["--tie-weights", "maybe"], "expected a boolean"),
    (["--n-heads", "4"], "--n-heads does not apply to --model mingru"),
    (["--d-state", "4"], "--d-state does not apply to --model mingru"),
    (["--expand", "2"], "--expand does not apply to --model mingru"),
    (["--d-conv", "4"], "--d-conv does not apply to --model mingru"),
    (["--model", "nope"], "invalid choice"),
    (["--preset", "nope"], "invalid choice"),
]
# Flags of the training config: `minrnn train TASK` and `minrnn ablate` have them.
TRAIN_CASES = [
    (["--steps", "0"], "steps must be >= 1"),
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--grad-accum", "0"], "grad_accum must be >= 1"),
    (["--context", "0"], "context must be >= 1"),
    (["--lr", "-1"], "lr must be >= 0"),
    (["--lr", "nan"], "lr must be >= 0"),
    (["--min-lr", "inf"], "min_lr must be a finite number"),
    (["--warmup-steps", "-1"], "warmup_steps must be >= 0"),
    (["--lr-schedule", "nope"], "lr_schedule must be"),
    (["--weight-decay", "nan"], "weight_decay must be >= 0"),
    (["--beta1", "1"], "beta1 must be in [0, 1)"),
    (["--beta2", "-0.1"], "beta2 must be in [0, 1)"),
    (["--grad-clip", "nan"], "grad_clip must be >= 0"),
    (["--eval-every", "0"], "eval_every must be >= 1"),
    (["--eval-iters", "0"], "eval_iters must be >= 1"),
    (["--ckpt-every", "-1"], "ckpt_every must be >= 0"),
    (["--patience", "-1"], "patience must be >= 0"),
    (["--seed", HUGE], "seed must be a 64-bit"),
    (["--device", "foo"], "unknown device 'foo'"),
    (["--backend", "nope"], "unknown backend 'nope'"),
    (["--tensorboard", "maybe"], "expected a boolean"),
    (["--on-nonfinite", "nope"], "on_nonfinite must be 'stop' or 'skip'"),
    (["--dtype", "float16"], "dtype must be one of ['float32', 'bf16']"),
    (["--validation", "nope"], "validation must be one of ['random', 'windows']"),
    (["--val-windows", "-1"], "val_windows must be >= 0"),
    (["--time-budget", "-1"], "time_budget must be >= 0"),
    (["--time-budget", "inf"], "time_budget must be a finite number"),
    (["--budget-clock", "cpu"], "budget_clock must be one of ['wall', 'cpu_time']"),
]
# Flags of the offline-RL task config (train rl and ablate rl).
RL_CASES = [
    (["--env", "Nope-v0"], "cannot make environment 'Nope-v0'"),
    (["--env", "CartPole-v1"], "must be flat continuous (Box) spaces"),
    (["--scale", "0"], "scale must be a finite number > 0"),
    (["--scale", "nan"], "scale must be a finite number > 0"),
    (["--max-ep-len", "0"], "max_ep_len must be >= 1"),
    (["--targets", "x,y"], "--targets must be comma-separated numbers"),
    (["--eval-episodes", "-1"], "eval_episodes must be >= 0"),
    (["--eval-mode", "nope"], "eval_mode must be 'window' or 'recurrent'"),
]
# Model flags of the decision models (train rl and ablate rl).
DECISION_CASES = [
    (["--d-model", "-5"], "d_model must be > 0"),
    (["--n-layers", "0"], "n_layers must be > 0"),
    (["--dropout", "1.5"], "dropout must be in [0, 1)"),
    (["--expansion", "nan"], "expansion must be > 0"),
    (["--mlp-ratio", "inf"], "mlp_ratio must be >= 0"),
    (["--vocab-size", "10"], "--vocab-size does not apply to --model mingru"),
    (["--conv-kernel", "2"], "--conv-kernel does not apply to --model mingru"),
    (["--norm", "rms"], "--norm does not apply to --model mingru"),
    (["--activation", "log"], "--activation does not apply to --model mingru"),
    (["--tie-weights", "maybe"], "expected a boolean"),
    (["--n-heads", "4"], "--n-heads does not apply to --model mingru"),
    (["--d-state", "4"], "--d-state does not apply to --model mingru"),
    (["--expand", "2"], "--expand does not apply to --model mingru"),
    (["--d-conv", "4"], "--d-conv does not apply to --model mingru"),
]
if not torch.cuda.is_available():
    TRAIN_CASES.append((["--device", "cuda"], "no usable CUDA GPU"))
    TRAIN_CASES.append((["--backend", "triton"], "cannot run on this machine"))
# Flags of selective copying's task config (train selective-copy and ablate).
COPY_CASES = [
    (["--length", "0"], "length"),
    (["--n-tokens", "0"], "n_tokens"),
    (["--stop-accuracy", "nan"], "stop_accuracy must be a number"),
    (["--test-batches", "0"], "test_batches must be >= 1"),
]
BENCH_CASES = [
    (["--threads", "0"], "threads must be positive"),
    (["--threads", "1,,2"], "comma-separated list"),
    (["--repeats", "0"], "repeats must be >= 1"),
    (["--warmup", "-1"], "warmup must be >= 0"),
    (["--budget", "nan"], "budget must be >= 0"),
    (["--device", "foo"], "unknown device 'foo'"),
    (["--dtype", "int8"], "invalid choice"),
    (["--seed", HUGE], "64-bit"),
    (["--backends", "nope"], "unknown backend"),
    (["--batch", "0"], "batch must be >= 1"),
    (["--out", "{file}/results"], "is a file, not a folder"),
]
GENERATE_CASES = [
    (["--kinds", "mingru,nope"], "kinds must be a non-empty list of"),
    (["--batches", "0"], "batches must be a non-empty list of positive ints"),
    (["--contexts", "1,x"], "comma-separated list of int"),
    (["--threads", "0"], "threads must be a non-empty list of positive ints"),
    (["--tokens", "0"], "need tokens >= 1"),
    (["--warmup", "-1"], "warmup >= 0"),
    (["--dtype", "float16"], "dtype must be one of ['float32', 'bfloat16']"),
    (["--preset", "nope"], "--preset must be one of"),
    (["--d-model", "0"], "--d-model must be >= 1"),
    (["--n-layers", "0"], "--n-layers must be >= 1"),
    (["--prefill-tokens", "0"], "prefill_tokens must be >= 1"),
    (["--max-cache-gib", "nan"], "max_cache_gib must be > 0"),
    (["--seed", HUGE], "64-bit"),
    (["--out", "{file}/results"], "is a file, not a folder"),
]

CASES: list[tuple[tuple[str, ...], list[str], str]] = [
    *((("train", "shakespeare"), flags, msg) for flags, msg in MODEL_CASES + TRAIN_CASES),
    (("train", "shakespeare"), ["--vocab-size", "10"], "Tiny Shakespeare has 65 symbols"),
    (("train", "shakespeare"), ["--data", "/nonexistent/tiny.txt"], "no Tiny Shakespeare file"),
    (("train", "shakespeare"), ["--out", "{file}"], "is a file, not a folder"),
    (("train", "shakespeare"), ["--out", "{file}/run"], "which is a file, not a folder"),
    (("train", "shakespeare"), ["--out", "{foreign}"], "holds files that are not a minrnn run"),
    (("train", "shakespeare"), ["--resume"], "nothing to resume"),
    (("train", "shakespeare"), ["--model", "transformer", "--n-heads", "5"], "multiple of n_heads"),
    (("train", "shakespeare"), ["--model", "mamba", "--d-state", "0"], "d_state must be > 0"),
    (("train", "shakespeare"), ["--model", "mamba", "--expand", "0"], "expand must be > 0"),
    (("train", "shakespeare"), ["--model", "mamba", "--d-conv", "0"], "d_conv must be > 0"),
    (("train", "shakespeare"), ["--model", "mamba", "--expansion", "3"], "--expansion does not apply to --model mamba"),
    (("train", "shakespeare"), ["--model", "mamba", "--n-heads", "2"], "--n-heads does not apply to --model mamba"),
    (("train", "selective-copy"), ["--model", "mamba", "--conv-kernel", "4"], "--conv-kernel does not apply to --model mamba"),
    (("train", "shakespeare"), ["--val-windows", "5"], "applies to validation 'windows' only (pass --validation windows)"),
    *((("train", "text"), flags, msg) for flags, msg in MODEL_CASES + TRAIN_CASES),
    (("train", "text"), ["--data", "/nonexistent/texts"], "no such file or folder"),
    (("train", "text"), ["--data", "{file}"], "the training split has"),
    (("train", "text"), ["--tokenizer", "bpe"], "tokenizer must be one of"),
    (("train", "text"), ["--val-fraction", "nan"], "val_fraction must be in (0, 1)"),
    (("train", "text"), ["--vocab-size", "10"], "vocab_size is 10, but"),
    (("train", "text"), ["--out", "{file}/run"], "which is a file, not a folder"),
    (("train", "text"), ["--resume"], "nothing to resume"),
    *((("train", "selective-copy"), flags, msg) for flags, msg in MODEL_CASES + TRAIN_CASES + COPY_CASES),
    (("train", "selective-copy"), ["--vocab-size", "2"], "vocab_size must be >= 3"),
    (("train", "selective-copy"), ["--validation", "windows"], "needs a task with a fixed held-out split"),
    (("train", "selective-copy"), ["--out", "{file}/run"], "which is a file, not a folder"),
    (("train", "selective-copy"), ["--resume"], "nothing to resume"),
    *((("ablate", "selective-copy"), flags, msg) for flags, msg in TRAIN_CASES + COPY_CASES),
    (("ablate", "selective-copy"), ["--cells", "mingru,gru"], "cells must be a non-empty list of mingru / minlstm"),
    (("ablate", "selective-copy"), ["--layers", "0"], "layers must be a non-empty list of positive depths"),
    (("ablate", "selective-copy"), ["--layers", "1,x"], "comma-separated list of int"),
    (("ablate", "selective-copy"), ["--seeds", "0"], "seeds must be >= 1"),
    (("ablate", "selective-copy"), ["--preset", "nope"], "invalid choice"),
    (("ablate", "selective-copy"), ["--out", "{file}/abl"], "is a file, not a folder"),
    (("ablate", "selective-copy"), ["--out", "{foreign_ablation}"], "ablation.json / ablation.md that this command did not write"),
    (("sample",), ["--checkpoint", "nope"], "invalid choice"),
    (("sample",), ["--prompt", ""], "--prompt is empty"),
    (("sample",), ["--prompt", "ROMEO: é"], "--prompt: text has characters outside the vocabulary: 'é'"),
    (("sample",), ["--tokens", "0"], "argument --tokens: must be >= 1"),
    (("sample",), ["--tokens", "-1"], "argument --tokens: must be >= 1"),
    (("sample",), ["--tokens", "many"], "invalid _positive_int value"),
    (("sample",), ["--temperature", "nan"], "argument --temperature: must be a finite number >= 0"),
    (("sample",), ["--temperature", "-1"], "argument --temperature: must be a finite number >= 0"),
    (("sample",), ["--temperature", "inf"], "argument --temperature: must be a finite number >= 0"),
    (("sample",), ["--top-k", "0"], "argument --top-k: must be >= 1"),
    (("sample",), ["--top-k", "-1"], "argument --top-k: must be >= 1"),
    (("sample",), ["--top-p", "0"], "argument --top-p: must be a number in (0, 1]"),
    (("sample",), ["--top-p", "nan"], "argument --top-p: must be a number in (0, 1]"),
    (("sample",), ["--seed", HUGE], "argument --seed: must be a 64-bit"),
    (("sample",), ["--device", "foo"], "unknown device 'foo'"),
    (("sample",), ["--backend", "nope"], "unknown backend 'nope'"),
    (("convert", "lucidrains"), ["--out", "{file}/model"], "is a file, not a folder"),
    (("convert", "lucidrains"), ["--tokenizer", "bpe"], "invalid choice"),
    (("convert", "lucidrains"), ["--tokenizer", "byte"], "a byte tokenizer needs a model of 256 tokens; this minLM has 5"),
    (("report",), ["--out", "{file}/table"], "is a file, not a folder"),
    (("report",), ["--title"], "expected one argument"),
    (("report",), ["--clock", "cpu"], "invalid choice"),
    (("report",), ["--at-time", "0"], "at_time must be a number of seconds > 0"),
    (("report",), ["--at-time", "nan"], "at_time must be a number of seconds > 0"),
    (("report",), ["--time-to-loss", "1.6,x"], "comma-separated list of float"),
    (("report",), ["--time-to-loss", "inf"], "time_to_loss must be a non-empty list of finite losses"),
    *((("train", "rl"), flags, msg) for flags, msg in TRAIN_CASES + RL_CASES + DECISION_CASES),
    (("train", "rl"), ["--layers", "0"], "n_layers must be > 0"),
    (("train", "rl"), ["--cell", "nope"], "unknown model kind 'nope'"),
    (("train", "rl"), ["--model", "nope"], "invalid choice"),
    (("train", "rl"), ["--preset", "nope"], "invalid choice"),
    (("train", "rl"), ["--data", "/nonexistent/d.hdf5"], "/nonexistent/d.hdf5: no such file"),
    (("train", "rl"), ["--data", "{file}"], "unknown dataset format"),
    (("train", "rl"), ["--out", "{file}"], "is a file, not a folder"),
    (("train", "rl"), ["--resume"], "nothing to resume"),
    *((("ablate", "rl"), flags, msg) for flags, msg in TRAIN_CASES + RL_CASES + DECISION_CASES),
    (("ablate", "rl"), ["--datasets", "/nonexistent/d.hdf5"], "/nonexistent/d.hdf5: no such file"),
    (("ablate", "rl"), ["--datasets", "{rldata},"], "comma-separated list"),
    (("ablate", "rl"), ["--models", "mingru,nope"], "unknown model kind(s) ['nope']"),
    (("ablate", "rl"), ["--seeds", "0"], "seeds must be >= 1"),
    (("ablate", "rl"), ["--preset", "nope"], "invalid choice"),
    (("ablate", "rl"), ["--cell", "minlstm"], "--cell minlstm contradicts --model mingru"),
    (("ablate", "rl"), ["--out", "{file}/abl"], "is a file, not a folder"),
    (("eval", "rl"), ["--episodes", "0"], "argument --episodes: must be >= 1"),
    (("eval", "rl"), ["--mode", "nope"], "invalid choice"),
    (("eval", "rl"), ["--checkpoint", "nope"], "invalid choice"),
    (("eval", "rl"), ["--targets", "x"], "comma-separated list of float"),
    (("eval", "rl"), ["--seed", "-1"], "argument --seed: must be an integer in [0, 2**63)"),
    (("eval", "rl"), ["--device", "foo"], "unknown device 'foo'"),
    (("data", "make"), ["--datasets", "nope"], "unknown Pendulum dataset 'nope'"),
    (("data", "make"), ["--episodes", "0"], "argument --episodes: must be >= 1"),
    (("data", "make"), ["--seed", "-1"], "argument --seed: must be an integer in [0, 2**63)"),
    (("data", "make"), ["--out", "{file}"], "is a file, not a folder"),
    (("data", "inspect"), ["--env", "Nope-v0"], "cannot make environment 'Nope-v0'"),
    (("data", "inspect"), ["--env", "CartPole-v1"], "must be flat continuous (Box) spaces"),
    (("data", "inspect"), ["--max-episode-steps", "0"], "argument --max-episode-steps: must be >= 1"),
    *((("bench", "runtime"), flags, msg) for flags, msg in BENCH_CASES),
    (("bench", "runtime"), ["--seq-lens", "0"], "seq_lens must be positive"),
    (("bench", "runtime"), ["--seq-lens", "8,x"], "comma-separated list of int"),
    (("bench", "runtime"), ["--d-in", "0"], "d_in must be >= 1"),
    (("bench", "runtime"), ["--d-h", "0"], "d_h must be >= 1"),
    (("bench", "runtime"), ["--models", "rwkv"], "unknown model kind"),
    (("bench", "runtime"), ["--memory", "vms"], "invalid choice"),
    *((("bench", "scan"), flags, msg) for flags, msg in BENCH_CASES),
    *((("bench", "generate"), flags, msg) for flags, msg in GENERATE_CASES),
    (("bench", "scan"), ["--seq-len", "0"], "seq_len must be >= 1"),
    (("bench", "scan"), ["--hidden", "0"], "hidden must be >= 1"),
    (("bench", "scan"), ["--ops", "fft"], "unknown op"),
    (("bench", "scan"), ["--copy-mib", "0"], "copy_mib must be > 0"),
]
if HAS_MAMBAPY:  # without mambapy, `--kinds mamba` is the install hint (test below)
    CASES.append((("bench", "generate"), ["--kinds", "mamba", "--dtype", "bfloat16"], "mamba runs with float32 weights only"))
if not torch.cuda.is_available():
    CASES += [(("sample",), ["--device", "cuda"], "no usable CUDA GPU"), (("sample",), ["--backend", "triton"], "cannot run on this machine")]
    CASES.append((("eval", "rl"), ["--device", "cuda"], "no usable CUDA GPU"))

# Flags that no value makes wrong, and why.
EXEMPT = {
    ("bench", "runtime", "--no-plot"): "a switch",
    ("bench", "generate", "--no-plot"): "a switch",
    ("eval", "rl", "--no-progress"): "a switch",
}


def cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of `minrnn argv`; argparse's own errors exit through SystemExit."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module", autouse=True)
def text_cache(tmp_path_factory):
    """`minrnn train text` caches encoded text under $XDG_CACHE_HOME: a temporary one here."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    """A small UTF-8 text file for `minrnn train text`."""
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text("To be, or not to be: that is the question.\n" * 30, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished tiny Shakespeare run."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "shakespeare", "--out", str(out), "--steps", "2", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny Pendulum dataset and a finished one-step offline-RL run on it."""
    from minrnn.rl import pendulum

    folder = tmp_path_factory.mktemp("rl")
    data = pendulum.make_dataset("medium", folder / "pendulum-medium-v0.hdf5", episodes=2, refs=(-1200.0, -150.0))
    out = folder / "run"
    assert main(["train", "rl", "--data", str(data), "--out", str(out), "--steps", "1", *RL_TINY]) == 0
    return Path(data), out


@pytest.fixture
def paths(tmp_path, run, rl_run, text) -> dict[str, str]:
    # a minLM of lucidrains' minGRU-pytorch as its state dict (vocabulary 5, width 4, inner 6, FF 8)
    shapes = {"token_emb.weight": (5, 4), "layers.0.1.weight": (4,), "layers.0.2.to_hidden_and_gate.weight": (12, 4),
              "layers.0.2.to_out.weight": (4, 6), "layers.0.3.weight": (4,), "layers.0.4.0.weight": (8, 4),
              "layers.0.4.0.bias": (8,), "layers.0.4.2.weight": (4, 8), "layers.0.4.2.bias": (4,), "norm.weight": (4,),
              "to_logits.weight": (5, 4)}
    torch.save({k: torch.randn(v) for k, v in shapes.items()}, tmp_path / "minlm.pt")
    (tmp_path / "file").write_text("a regular file\n")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"learning_rate": 0.1}\n')  # someone else's config
    (foreign / "metrics.jsonl").write_text("")
    abl = tmp_path / "abl"
    abl.mkdir()
    (abl / "ablation.md").write_text("# my notes\n")
    return {"out": str(tmp_path / "out"), "run": str(run), "file": str(tmp_path / "file"), "foreign": str(foreign),
            "foreign_ablation": str(abl), "rldata": str(rl_run[0]), "rlrun": str(rl_run[1]), "text": str(text),
            "lucid": str(tmp_path / "minlm.pt")}


@pytest.mark.parametrize("path, flags, message", CASES, ids=[" ".join((*p, *f)) for p, f, _ in CASES])
def test_bad_flag_is_a_one_line_error(path, flags, message, paths, capsys):
    argv = [a.format(**paths) for a in BASE[path] + flags]
    code, err = cli(argv, capsys)
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err
    if "usage:" not in err:  # argparse's errors come with its usage line
        assert err.startswith("minrnn: error: ") and err.count("minrnn: error:") == 1, err
    if "{foreign}" in flags:  # the user's files are untouched
        assert sorted(os.listdir(paths["foreign"])) == ["config.json", "metrics.jsonl"]
        assert (Path(paths["foreign"]) / "config.json").read_text() == '{"learning_rate": 0.1}\n'


def _leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            # `ablate` takes its task as a positional with one choice: one subcommand
            yield from _leaf_parsers(sub, path + (name,))


def test_every_flag_has_a_case():
    missing = []
    for path, parser in _leaf_parsers(build_parser()):
        tested = {f for p, flags, _ in CASES if p == path for f in flags}
        for flag in (s for a in parser._actions for s in a.option_strings if s not in ("-h", "--help")):
            if flag not in tested and (*path, flag) not in EXEMPT:
                missing.append(" ".join((*path, flag)))
    assert not missing, f"flags without a bad-value case: {missing}"


def test_bench_generate_without_mambapy(monkeypatch, tmp_path, capsys):
    """Without mambapy, `--kinds mamba` is a one-line install hint before anything is timed, and
    the default kinds leave mamba out."""
    from minrnn.bench import generate
    from minrnn.models.mamba import INSTALL_HINT

    for name in ("mambapy", "mambapy.mamba", "mambapy.pscan"):
        monkeypatch.setitem(sys.modules, name, None)  # import mambapy now raises ImportError
    argv = [a.format(out=str(tmp_path / "out")) for a in BASE[("bench", "generate")]]
    code, err = cli([*argv, "--kinds", "mingru,mamba"], capsys)
    assert code == 2 and err == f"minrnn: error: {INSTALL_HINT}\n", err
    assert not list((tmp_path / "out").glob("generate-*"))
    assert "mamba" not in generate.available_kinds() and generate.GenerateConfig().kinds == ["mingru", "minlstm", "transformer", "gru", "lstm"]


def test_no_command_is_a_usage_error(capsys):
    code, err = cli([], capsys)
    assert code == 2 and "required" in err


# --- broken run folders and checkpoints ---------------------------------------------------------------


def _broken(run: Path, out: Path, change) -> Path:
    """A copy of ``run``'s checkpoint changed by ``change(payload)``, as the only checkpoint of ``out``."""
    payload = load_checkpoint(run / BEST)
    change(payload)
    out.mkdir()
    save_checkpoint(out / CHECKPOINT, payload)
    return out


def _nan_weights(p):
    p["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in p["model"].items()}


BROKEN = {
    "garbage file": (lambda d: (d / CHECKPOINT).write_bytes(b"\x00garbage" * 10), "not a readable minrnn checkpoint"),
    "foreign safetensors": (lambda d: save_file({"w": torch.zeros(2)}, str(d / CHECKPOINT)), "not a minrnn checkpoint"),
    "no config": (lambda p: p.pop("config"), "holds no model config"),
    "unknown arch": (lambda p: p["config"].update(arch="rwkv"), "unknown model arch 'rwkv'"),
    "config with a foreign field": (lambda p: p["config"]["model"].update(heads=3), "bad config for arch 'minrnn'"),
    "config with a string size": (lambda p: p["config"]["model"].update(d_model="16"), "LMConfig.d_model must be an int"),
    "config with a negative depth": (lambda p: p["config"]["model"].update(n_layers=-1), "n_layers must be > 0"),
    "weights of another model": (lambda p: p["config"]["model"].update(d_model=32), "does not fit this model"),
    "tokenizer not a string": (lambda p: p.update(tokenizer=65), "malformed tokenizer entry"),
    "tokenizer repeating characters": (lambda p: p.update(tokenizer="a" * 65), "malformed tokenizer entry"),
    "tokenizer too short": (lambda p: p.update(tokenizer=p["tokenizer"][:-1]), "malformed tokenizer entry: 64 characters for a model of 65"),
    "no tokenizer": (lambda p: p.pop("tokenizer"), "has no tokenizer"),
    "NaN weights (a diverged run)": (_nan_weights, "not finite (NaN/Inf"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_sample_on_a_broken_checkpoint_is_a_one_line_error(case, run, tmp_path, capsys):
    change, message = BROKEN[case]
    out = tmp_path / "broken"
    if case in ("garbage file", "foreign safetensors"):
        out.mkdir()
        change(out)
    else:
        _broken(run, out, change)
    code, err = cli(["sample", str(out), "--tokens", "3"], capsys)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert err.startswith("minrnn: error: ") and err.count("\n") == 1, err


def test_report_on_a_folder_that_is_not_a_run(run, tmp_path, capsys):
    for name, text in {"foreign": '{"learning_rate": 0.1}', "corrupt": '{"task": "shakesp'}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(text)
        code, err = cli(["report", str(tmp_path / name), "--out", str(tmp_path / "t")], capsys)
        assert code == 2 and "is not the config of a `minrnn train` run" in err, err
    code, err = cli(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "t")], capsys)
    assert code == 2 and "no config.json" in err


# --- sampling choices -------------------------------------------------------------------------------------


def test_top_k_above_the_vocabulary_keeps_every_token(run, capsys):
    """Clamped (as Hugging Face's top-k), not refused: top-k 1000 of a 65-symbol vocabulary equals no top-k."""
    assert main(["sample", str(run), "--tokens", "30", "--seed", "4", "--top-k", "1000"]) == 0
    clamped = capsys.readouterr().out
    assert main(["sample", str(run), "--tokens", "30", "--seed", "4"]) == 0
    assert capsys.readouterr().out == clamped


def test_temperature_0_is_greedy(run, capsys):
    outs = []
    for seed in ("1", "2"):
        assert main(["sample", str(run), "--tokens", "30", "--seed", seed, "--temperature", "0"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]  # no randomness left
    assert main(["sample", str(run), "--tokens", "30", "--seed", "1", "--temperature", "0", "--top-k", "1"]) == 0
    assert capsys.readouterr().out == outs[0]  # the single most likely token, as top-1


class _PipeClosedAfter(io.StringIO):
    """A stdout whose reader goes away after ``n`` characters, as `head -c n` does."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def write(self, text: str) -> int:
        if self.tell() + len(text) > self.n:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_sample_into_a_closed_pipe_returns_1(run, monkeypatch):
    monkeypatch.setattr(sys, "stdout", _PipeClosedAfter(10))
    assert main(["sample", str(run), "--tokens", "1000"]) == 1


@pytest.mark.slow  # a fresh process: ~10-30 s on a busy 2-core machine
def test_sample_into_a_closed_pipe_stops_quietly(run):
    """`minrnn sample ... | head -c 10`: the reader goes away; no BrokenPipeError traceback (CPython's
    docs: stdout to devnull, exit 1)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "minrnn", "sample", str(run), "--tokens", "100000"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = proc.stdout.read(10)
    proc.stdout.close()  # as `head -c 10` exits
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert len(head) == 10
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err
