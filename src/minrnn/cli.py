"""Command line: ``minrnn train TASK ...``, ``minrnn ablate selective-copy|rl ...``, ``minrnn eval rl
RUN_DIR ...``, ``minrnn data make|inspect ...``, ``minrnn sample RUN_DIR ...``, ``minrnn report
RUN_DIR ...`` and ``minrnn bench runtime|scan ...``.

    minrnn train shakespeare --preset paper --model minlstm --out runs/minlstm
    minrnn train text --data my_texts/ --out runs/mytext         # your own UTF-8 text (file or folder)
    minrnn train shakespeare --out runs/minlstm --resume          # after a crash or kill
    torchrun --nproc_per_node 2 -m minrnn train shakespeare --out runs/ddp   # DDP
    minrnn sample runs/minlstm --prompt "ROMEO:" --temperature 0.8 --top-k 40 --seed 1
    minrnn convert lucidrains minlm.pt --out models/minlm --tokenizer byte   # lucidrains' minGRU-pytorch
    minrnn report runs/mingru runs/minlstm --out results/shakespeare/paper   # table beside the paper's
    minrnn train selective-copy --model mingru --layers 3 --out runs/copy
    minrnn ablate selective-copy --cells mingru,minlstm --layers 1,2,3 --seeds 3 --out runs/ablation
    minrnn data make --out data/pendulum                              # offline-RL datasets (Pendulum-v1)
    minrnn train rl --data data/pendulum/pendulum-medium-v0.hdf5 --env Pendulum-v1 --model minlstm --out runs/rl
    minrnn eval rl runs/rl --episodes 50
    minrnn ablate rl --datasets A.hdf5,B.hdf5 --models mingru,minlstm,transformer --seeds 3 --out runs/rl-bench

Every field of the task, model and training configs is a flag (``--d-model 256``, ``--lr 3e-4``)
that overrides the chosen preset; the resolved config is saved as ``config.json`` in the run folder.

Exit status: 0 done; 2 the command cannot run as asked (a bad flag, file or folder, or out of
memory), with one line ``minrnn: error: ...`` saying why and what to do; 3 the training run
diverged (its loss went NaN/Inf; the run folder says so and keeps its last good checkpoint); 1 the
reader of the output went away (``minrnn sample ... | head``); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import Sequence

import torch

from minrnn.layers import set_backend
from minrnn.models import MODEL_KINDS
from minrnn.models.registry import model_fields
from minrnn.pretrained import load_run
from minrnn.data.text import tokenizer_from_checkpoint
from minrnn.tasks import TASKS
from minrnn.tasks.ablation import run_ablation, run_rl_benchmark
from minrnn.tasks.base import fresh_run_config, read_result, resumed_run_config, run_task
from minrnn.train.config import TrainConfig
from minrnn.train.device import resolve_device
from minrnn.train.distributed import close_distributed, init_distributed
from minrnn.train.trainer import TrainingDiverged


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {s!r}")


def _positive_int(s: str) -> int:
    n = int(s)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _nonnegative_float(s: str) -> float:
    x = float(s)
    if not (math.isfinite(x) and x >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {s}")
    return x


def _probability(s: str) -> float:
    x = float(s)
    if not 0.0 < x <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {s}")
    return x


def _seed(s: str) -> int:
    n = int(s)
    if not -(2**63) <= n < 2**63:
        raise argparse.ArgumentTypeError(f"must be a 64-bit signed integer, got {n}")
    return n


def _env_seed(s: str) -> int:
    """A seed for numpy's and gymnasium's generators, which take no negative seed."""
    n = int(s)
    if not 0 <= n < 2**63:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**63), got {n}")
    return n


def parse_list(text: str, kind: type = str) -> list:
    """'64,128, 256' -> [64, 128, 256] (``kind`` converts each item); ValueError on an empty item."""
    items = [s.strip() for s in text.split(",")]
    if not items or any(not s for s in items):
        raise ValueError(f"expected a comma-separated list, got {text!r}")
    try:
        return [kind(s) for s in items]
    except ValueError:
        raise ValueError(f"expected a comma-separated list of {kind.__name__}, got {text!r}") from None


def _add_config_flags(parser: argparse.ArgumentParser, cls_or_fields, title: str) -> None:
    """One ``--field-name`` flag per dataclass field, default None (= keep the preset's value).
    A boolean flag alone means true (``--tensorboard``); it also takes a value (``--bias false``)."""
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls_or_fields) if isinstance(cls_or_fields, type) else cls_or_fields:
        flag = "--" + f.name.replace("_", "-")
        if str(f.type) == "bool":
            group.add_argument(flag, dest=f.name, type=_parse_bool, nargs="?", const=True, default=None, metavar="BOOL")
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        group.add_argument(flag, dest=f.name, type=kind, default=None, metavar=str(f.type).upper())


def _override(cfg, args: argparse.Namespace):
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(cfg) if getattr(args, f.name, None) is not None}
    return dataclasses.replace(cfg, **changes)


def _given(args: argparse.Namespace, names) -> dict:
    """The settings among ``names`` that the user gave on the command line."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minrnn", description="minGRU / minLSTM: train, sample, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train a model on a task",
        description="Train a model; under `torchrun --nproc_per_node N -m minrnn train ...` with DDP. "
        "--batch-size is per process and micro-batch: one optimizer step sees batch_size x grad_accum x N sequences.",
    )
    tasks = train.add_subparsers(dest="task", required=True, metavar="TASK", help=f"experiment to run: {', '.join(TASKS)}")
    for name, task in TASKS.items():
        p = tasks.add_parser(name, help=(task.__doc__ or "").splitlines()[0])
        p.add_argument("--preset", default=task.DEFAULT_PRESET, choices=list(task.PRESETS), help=f"starting config (default: {task.DEFAULT_PRESET})")
        p.add_argument("--model", dest="model_kind", choices=task.MODEL_KINDS, default=None,
                       help="; ".join(f"{k}: {MODEL_KINDS[k].description}" for k in task.MODEL_KINDS) + " (default: the preset's cell)")
        p.add_argument("--layers", dest="n_layers", type=int, default=None, help="number of blocks (alias of --n-layers)")
        p.add_argument("--out", required=True, help="run folder for config, metrics and checkpoints")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint with its saved config; training flags given here "
            "override it (e.g. --steps to extend a finished run: the cosine schedule then stretches)")
        _add_config_flags(p, task.TaskConfig, "task config")
        _add_config_flags(p, model_fields().values(), "model config (a flag the chosen --model does not read is refused)")
        _add_config_flags(p, TrainConfig, "training config")

    ablate = sub.add_parser("ablate", help="train a grid of runs over seeds and tabulate mean +- std")
    ablate_tasks = ablate.add_subparsers(dest="task", required=True, metavar="TASK", help="selective-copy (cell x depth) or rl (model x dataset)")
    copy = ablate_tasks.add_parser("selective-copy", help="cell x depth x seed: test accuracy (paper Table 1)")
    copy.add_argument("--cells", default="mingru,minlstm", help="comma-separated cells: mingru, minlstm, mamba (the mamba extra) (default: mingru,minlstm)")
    copy.add_argument("--layers", default="1,2,3", help="comma-separated depths (default: 1,2,3)")
    copy.add_argument("--seeds", type=int, default=3, help="runs per cell x depth, with seeds --seed, --seed + 1, ... (default: 3)")
    copy.add_argument("--preset", default="cpu", choices=list(TASKS["selective-copy"].PRESETS), help="preset of the task (default: cpu)")
    copy.add_argument("--out", required=True, help="folder for the runs and ablation.json / ablation.md")
    _add_config_flags(copy, TASKS["selective-copy"].TaskConfig, "task config")
    _add_config_flags(copy, TrainConfig, "training config (seed is set per run)")
    rl_task = TASKS["rl"]
    rl_grid = ablate_tasks.add_parser("rl", help="model x dataset x seed: normalised score of offline RL (paper Table 3)")
    rl_grid.add_argument("--datasets", required=True, help="comma-separated datasets (D4RL .hdf5, DT .pkl, minari:<id>)")
    rl_grid.add_argument("--models", default="mingru,minlstm,transformer", help="comma-separated model kinds (default: mingru,minlstm,transformer)")
    rl_grid.add_argument("--seeds", type=int, default=3, help="runs per model x dataset, with seeds --seed, --seed + 1, ... (default: 3)")
    rl_grid.add_argument("--preset", default=rl_task.DEFAULT_PRESET, choices=list(rl_task.PRESETS), help=f"preset (default: {rl_task.DEFAULT_PRESET})")
    rl_grid.add_argument("--out", required=True, help="folder for the runs and ablation.json / ablation.md")
    _add_config_flags(rl_grid, [f for f in dataclasses.fields(rl_task.TaskConfig) if f.name != "data"], "task config")
    _add_config_flags(rl_grid, model_fields().values(), "model config")
    _add_config_flags(rl_grid, TrainConfig, "training config (seed: of the first round)")

    evaluate = sub.add_parser("eval", help="evaluate a trained run")
    eval_tasks = evaluate.add_subparsers(dest="task", required=True, metavar="TASK")
    ev = eval_tasks.add_parser("rl", help="run an offline-RL policy in its environment; writes eval-<checkpoint>-<mode>.json into the run folder")
    ev.add_argument("run_dir", help="run folder written by `minrnn train rl` (or a checkpoint file)")
    ev.add_argument("--episodes", type=_positive_int, default=10, help="episodes per target return, run in lock-step (default: 10; DT: 100)")
    ev.add_argument("--mode", choices=["window", "recurrent"], default="window", help="window: re-encode the last K steps (DT, default); recurrent: carry the state (O(1) per step)")
    ev.add_argument("--checkpoint", choices=["latest", "best"], default="latest", help="latest step (default) or lowest validation loss")
    ev.add_argument("--targets", default=None, help="comma-separated target returns, e.g. --targets=3600,1800 (default: the run's)")
    ev.add_argument("--seed", type=_env_seed, default=0, help="episode i starts from env.reset(seed=seed + i)")
    ev.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")

    data = sub.add_parser("data", help="offline-RL datasets: make the local Pendulum ones, inspect any")
    data_sub = data.add_subparsers(dest="action", required=True)
    make = data_sub.add_parser("make", help="write Pendulum-v1 datasets in the D4RL HDF5 layout (minrnn.rl.pendulum)")
    make.add_argument("--out", required=True, help="folder for pendulum-<dataset>-v0.hdf5")
    make.add_argument("--datasets", default="expert,medium,medium-replay,medium-expert", help="comma-separated (default: all four)")
    make.add_argument("--episodes", type=_positive_int, default=None, help="episodes per behaviour policy (default: 200 expert / medium, 100 medium-replay)")
    make.add_argument("--seed", type=_env_seed, default=0, help="seed of the behaviour policies' noise and the episodes (default: 0)")
    inspect = data_sub.add_parser("inspect", help="read a dataset as training would and print its summary (JSON)")
    inspect.add_argument("data", help="D4RL .hdf5, DT .pkl or minari:<dataset id>")
    inspect.add_argument("--env", default=None, help="also check its dimensions against this gymnasium environment")
    inspect.add_argument("--max-episode-steps", type=_positive_int, default=1000, help="time limit splitting files without timeouts (default: 1000)")

    sample = sub.add_parser("sample", help="generate text from a trained run")
    sample.add_argument("run_dir", help="run folder written by `minrnn train` (or a checkpoint file)")
    sample.add_argument("--checkpoint", choices=["best", "latest"], default="best", help="best validation loss (default) or the latest step")
    sample.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    sample.add_argument("--tokens", type=_positive_int, default=500, help="characters to generate")
    sample.add_argument("--temperature", type=_nonnegative_float, default=0.8, help="0: greedy (always the most likely character)")
    sample.add_argument("--top-k", type=_positive_int, default=None,
                        help="sample among the k most likely characters only (k >= the vocabulary size: all of them)")
    sample.add_argument("--top-p", type=_probability, default=None,
                        help="nucleus sampling: only the most likely characters that together reach this probability")
    sample.add_argument("--seed", type=_seed, default=0)
    sample.add_argument("--device", default="cpu")
    sample.add_argument("--backend", default=None, help="scan backend of the minRNN layers (default: automatic)")

    convert = sub.add_parser("convert", help="convert another package's checkpoint into a minrnn model folder")
    convert_from = convert.add_subparsers(dest="source", required=True, metavar="SOURCE")
    lucid = convert_from.add_parser("lucidrains", help="a minLM of lucidrains' minGRU-pytorch (torch.save'd state_dict)")
    lucid.add_argument("checkpoint", help="file written by torch.save(model.state_dict(), ...)")
    lucid.add_argument("--out", required=True, help="model folder to write (config.json, model.safetensors)")
    lucid.add_argument("--tokenizer", choices=["none", "byte"], default="none", help="save a byte tokenizer beside it (their enwik8 models)")

    report = sub.add_parser("report", help="tabulate runs (best val loss, step, times, hardware) beside the paper's figures")
    report.add_argument("run_dirs", nargs="+", help="run folders written by `minrnn train` (finished or not)")
    report.add_argument("--out", required=True, help="path stem: writes <out>.json, <out>.md and <out>.png")
    report.add_argument("--title", default=None, help="table title (default: task and preset)")
    report.add_argument("--clock", default="wall", choices=["wall", "cpu_time"],
                        help="the clock of the time columns: training wall time or its process CPU time, validation excluded (default: wall)")
    report.add_argument("--time-to-loss", default="1.60,1.55", help="comma-separated validation losses: when each run first reached them (default: 1.60,1.55)")
    report.add_argument("--at-time", type=float, default=None, metavar="SECONDS", help="add each run's best validation loss within this many seconds on --clock (a common budget)")

    bench = sub.add_parser("bench", help="benchmarks: training-step runtime (paper Fig. 1), scan vs memory bandwidth, generation")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True)
    runtime = bench_sub.add_parser("runtime", help="training step time and peak memory vs T (paper Figure 1)")
    runtime.add_argument("--seq-lens", default="64,128,256,512,1024,2048,4096", help="comma-separated T values")
    runtime.add_argument("--batch", type=int, default=64)
    runtime.add_argument("--d-in", type=int, default=256)
    runtime.add_argument("--d-h", type=int, default=256)
    runtime.add_argument("--models", default=None, help="comma-separated subset of mingru,minlstm,gru,lstm,loop-gru,loop-lstm,linear (default: all)")
    runtime.add_argument("--backends", default="", help="extra minRNN backends to measure beside the default, e.g. torch,log")
    runtime.add_argument("--budget", type=float, default=120.0, help="seconds per measurement before repeats stop / larger T are skipped")
    runtime.add_argument(
        "--memory",
        default="allocator",
        choices=["allocator", "rss", "none"],
        help="peak memory: allocator trace (default), rss (CPU: fresh process per measurement), none",
    )
    runtime.add_argument("--no-plot", action="store_true", help="write no PNG")
    scan = bench_sub.add_parser("scan", help="linear_scan / min_gru / min_lstm alone vs memory bandwidth")
    scan.add_argument("--batch", type=int, default=64)
    scan.add_argument("--seq-len", type=int, default=4096)
    scan.add_argument("--hidden", type=int, default=256)
    scan.add_argument("--ops", default="linear_scan,min_gru,min_lstm", help="comma-separated ops")
    scan.add_argument("--backends", default=None, help="comma-separated backends (default: all that run on --device)")
    scan.add_argument("--budget", type=float, default=60.0, help="seconds per measurement before repeats stop")
    scan.add_argument("--copy-mib", type=float, default=256.0, help="size of the tensor copied to measure bandwidth")
    gen = bench_sub.add_parser("generate", help="time per generated token vs context, every LM kind, beside the matmul floor (paper App. D.2)")
    gen.add_argument("--kinds", default=None, help="comma-separated subset of " + ",".join(TASKS["shakespeare"].MODEL_KINDS)
                     + " (default: all that run here; mamba needs the mamba extra and float32)")
    gen.add_argument("--batches", default="1,8,64", help="comma-separated batch sizes")
    gen.add_argument("--contexts", default="16,64,256,1024,4096", help="comma-separated context lengths L (tokens read before)")
    gen.add_argument("--threads", default="1,2", help="comma-separated thread counts, each run in turn")
    gen.add_argument("--tokens", type=int, default=20, help="timed generated tokens per (model, batch, context); median reported")
    gen.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    gen.add_argument("--dtype", default="float32", help="the weights' dtype: float32 or bfloat16 (minRNN states stay float32)")
    gen.add_argument("--preset", default="paper", help="shakespeare preset whose model sizes are used (paper, small)")
    gen.add_argument("--d-model", type=int, default=None, help="override the preset's width (e.g. tiny smoke runs)")
    gen.add_argument("--n-layers", type=int, default=None, help="override the preset's depth")
    gen.add_argument("--prefill-tokens", type=int, default=16384, help="read at most B x L prompt tokens in parallel; beyond, a synthetic state of the same size")
    gen.add_argument("--max-cache-gib", type=float, default=2.0, help="skip Transformer rows whose KV cache would be larger")
    gen.add_argument("--seed", type=_seed, default=0)
    gen.add_argument("--out", default="benchmarks/results", help="folder for the JSON, MD (and PNG) results")
    gen.add_argument("--no-plot", action="store_true", help="write no PNG")
    for p in (runtime, scan):
        p.add_argument("--threads", default=None, help="comma-separated thread counts, each run in turn (default: 1 and all cores)")
        p.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median reported)")
        p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
        p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
        p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
        p.add_argument("--seed", type=_seed, default=0)
        p.add_argument("--out", default="benchmarks/results", help="folder for the JSON (and PNG) results")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    info = init_distributed(args.device or "auto")
    task = TASKS[args.task]
    names = [f.name for f in dataclasses.fields(TrainConfig)] + [f.name for f in dataclasses.fields(task.TaskConfig)] + list(model_fields())
    settings = _given(args, names)
    try:
        if args.resume:
            if args.model_kind is not None:
                raise ValueError("--resume keeps the saved model; drop --model")
            config = resumed_run_config(task, args.task, args.out, settings)
        else:
            config = fresh_run_config(task, args.task, args.preset, settings, args.model_kind)
        result = run_task(task, config, args.out, resume=args.resume)
    except TrainingDiverged as e:
        if info.is_main:
            again = "Start it again with" if e.checkpoint_step is None else "Continue from the checkpoint with --resume and"
            print(f"minrnn: error: {e}. {again} a lower --lr or --grad-clip, or train with "
                  f"--on-nonfinite skip to skip such steps ({args.out}/result.json says so too)", file=sys.stderr)
        return 3
    finally:
        close_distributed()
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k.startswith(("val_", "test_", "best_val")) and isinstance(v, float))
    if info.is_main:
        ended = {"early_stop": " (early stop)", "time_budget": " (time budget spent)"}.get(result.get("stopped"), "")
        print(f"done: step {result.get('step')}{ended}, {shown} "
              f"(best at step {result.get('best_step')}); run folder {args.out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if not args.prompt:
        raise ValueError("--prompt is empty; give at least one character to continue (default: a newline)")
    model, ckpt, path = load_run(args.run_dir, args.checkpoint)
    model.to(device)
    if args.backend is not None:
        set_backend(model, args.backend)
    if "tokenizer" not in ckpt:
        raise ValueError(f"{path} has no tokenizer: `minrnn sample` generates text from a text run (shakespeare, text)")
    tok = tokenizer_from_checkpoint(ckpt, str(path))
    try:
        prompt = tok.encode(args.prompt).to(device)
    except ValueError as e:
        raise ValueError(f"--prompt: {e} of this run") from None
    result = read_result(path.parent)
    if result is not None and result.get("stopped") == "diverged":
        print(f"note: this run diverged at step {result.get('step')} (see its result.json); {path.name} holds "
              f"its weights of step {ckpt.get('step')}, from before that", file=sys.stderr)
    print(f"[{path}, step {ckpt.get('step')}]", file=sys.stderr)
    sys.stdout.write(args.prompt)
    decode = tok.stream_decoder()
    for token in model.generate(prompt, args.tokens, args.temperature, args.top_k, args.top_p, seed=args.seed, stream=True):
        sys.stdout.write(decode(token.view(1)))
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from minrnn.bench import runtime, scan

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    Path(args.out).mkdir(parents=True, exist_ok=True)  # a bad --out fails now, not after the benchmark
    if args.benchmark == "generate":
        return _bench_generate(args, log)
    common = {"repeats": args.repeats, "warmup": args.warmup, "device": args.device, "dtype": args.dtype, "seed": args.seed}
    if args.threads is not None:
        common["threads"] = parse_list(args.threads, int)
    if args.benchmark == "runtime":
        cfg = runtime.RuntimeConfig(
            seq_lens=parse_list(args.seq_lens, int),
            batch=args.batch,
            d_in=args.d_in,
            d_h=args.d_h,
            backends=parse_list(args.backends) if args.backends else [],
            budget_s=args.budget,
            memory=args.memory,
            **common,
        )
        if args.models is not None:
            cfg.models = parse_list(args.models)
        result = runtime.run_and_save(cfg, args.out, plot=not args.no_plot, log=log)
    else:
        cfg = scan.ScanConfig(
            batch=args.batch,
            seq_len=args.seq_len,
            hidden=args.hidden,
            ops=parse_list(args.ops),
            budget_s=args.budget,
            copy_mib=args.copy_mib,
            **common,
        )
        if args.backends is not None:
            cfg.backends = parse_list(args.backends)
        result = scan.run_and_save(cfg, args.out, log=log)
    print(result["table"])
    print("results: " + ", ".join(str(p) for p in result["files"].values() if p))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from minrnn.convert import convert_checkpoint

    model = convert_checkpoint(args.checkpoint, args.out, tokenizer=None if args.tokenizer == "none" else args.tokenizer)
    print(f"{model.config.cell} MinRNNLM, {model.num_params():,} parameters: {args.out} (load it with minrnn.load)")
    return 0


def _bench_generate(args: argparse.Namespace, log) -> int:
    from minrnn.bench import generate
    from minrnn.tasks import shakespeare

    if args.preset not in shakespeare.PRESETS:
        raise ValueError(f"--preset must be one of {list(shakespeare.PRESETS)}, got {args.preset!r}")
    model = {k: v for k, v in (("d_model", args.d_model), ("n_layers", args.n_layers)) if v is not None}
    for name, v in model.items():
        if v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    cfg = generate.GenerateConfig(
        kinds=None if args.kinds is None else parse_list(args.kinds),
        batches=parse_list(args.batches, int),
        contexts=parse_list(args.contexts, int),
        threads=parse_list(args.threads, int),
        tokens=args.tokens,
        warmup=args.warmup,
        dtype=args.dtype,
        preset=args.preset,
        model=model,
        prefill_tokens=args.prefill_tokens,
        max_cache_gib=args.max_cache_gib,
        seed=args.seed,
    )
    result = generate.run_and_save(cfg, args.out, plot=not args.no_plot, log=log)
    print(result["table"])
    print("results: " + ", ".join(str(p) for p in result["files"].values() if p))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from minrnn.tasks.report import write_report

    payload = write_report(args.run_dirs, args.out, args.title, args.clock, parse_list(args.time_to_loss, float), args.at_time)
    print(payload["table"])
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    task = TASKS[args.task]
    if args.task == "rl":
        names = [f.name for f in dataclasses.fields(TrainConfig)] + [f.name for f in dataclasses.fields(task.TaskConfig)] + list(model_fields())
        settings = _given(args, [n for n in names if n != "data"])
        run_rl_benchmark(task, args.preset, parse_list(args.datasets), parse_list(args.models), args.seeds, settings, args.out)
        return 0
    _, train_cfg, task_cfg = task.configs(args.preset)
    train_cfg, task_cfg = _override(train_cfg, args), _override(task_cfg, args)
    cells, layers = parse_list(args.cells), parse_list(args.layers, int)
    run_ablation(task, args.task, args.preset, cells, layers, args.seeds, train_cfg, task_cfg, args.out)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from minrnn.tasks.rl import evaluate_run, headline

    targets = parse_list(args.targets, float) if args.targets else None
    result, path = evaluate_run(
        args.run_dir, args.episodes, args.mode, checkpoint=args.checkpoint, targets=targets, seed=args.seed,
        device=args.device, progress=not args.no_progress,
    )
    for r in result["results"]:
        score = f", normalised {r['normalized_mean']:.1f} ± {r['normalized_std']:.1f}" if "normalized_mean" in r else ""
        print(f"target {r['target']:g}: return {r['return_mean']:.1f} ± {r['return_std']:.1f}{score}, length {r['length_mean']:.0f} ({args.episodes} episodes)")
    print(f"scores: {path}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    import json

    from minrnn.rl import load_trajectories

    if args.action == "make":
        from minrnn.rl import pendulum

        paths = pendulum.make_all(args.out, parse_list(args.datasets), args.episodes, args.seed)
        for path in paths:
            summary = load_trajectories(path).summary()
            print(f"{path}: {summary['episodes']} episodes, {summary['steps']} steps, mean return {summary['return']['mean']:.1f}")
        return 0
    data = load_trajectories(args.data, max_episode_steps=args.max_episode_steps)
    if args.env:
        from minrnn.rl.envs import env_info

        info = env_info(args.env)
        data.check_env(info.obs_dim, info.act_dim, info.env_id)
    print(json.dumps(data.summary(), indent=2))
    return 0


def _os_error(e: OSError) -> str:
    """A file-system error as one line that names the path at fault."""
    if e.filename is None:
        return str(e)
    if isinstance(e, (NotADirectoryError, FileExistsError)):
        for p in (Path(e.filename), *Path(e.filename).parents):
            if p.exists() and not p.is_dir():
                return f"{p} is a file, not a folder; choose another path"
    return f"{e.filename}: {e.strerror or e}"


def _stdout_gone() -> int:
    """The reader of stdout went away (``minrnn sample ... | head``): stop quietly, as CPython's
    docs advise (signal module, "Note on SIGPIPE"): point stdout at devnull so that the flush at
    exit does not raise again, and exit with 1."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a file descriptor (captured): nothing will flush to the pipe
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {
        "train": cmd_train, "ablate": cmd_ablate, "eval": cmd_eval, "data": cmd_data, "sample": cmd_sample, "report": cmd_report, "convert": cmd_convert,
        "bench": cmd_bench,
    }
    try:
        code = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here rather than at exit
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except (ValueError, ImportError) as e:  # ImportError: an optional extra is missing (its message says which)
        print(f"minrnn: error: {e}", file=sys.stderr)
    except OSError as e:  # a path that cannot be read or written: the message names it
        print(f"minrnn: error: {_os_error(e)}", file=sys.stderr)
    except (MemoryError, torch.OutOfMemoryError):
        print("minrnn: error: out of memory; use a smaller --batch-size, --context or model", file=sys.stderr)
    except RuntimeError as e:
        if "can't allocate memory" not in str(e):  # torch's CPU allocator; anything else is a bug
            raise
        print("minrnn: error: out of memory; use a smaller --batch-size, --context or model", file=sys.stderr)
    except KeyboardInterrupt:
        print("minrnn: interrupted", file=sys.stderr)
        return 130
    return 2
