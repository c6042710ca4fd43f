"""Time per generated token against the context length already read, in step mode.

Builds the paper-preset models (random weights: the time does not depend on them), reads a
random prompt of L tokens in parallel mode, then times `step` one token at a time. MinRNNLM and
the nn.GRU / nn.LSTM LMs carry a fixed-size state, so their time per token should stay flat in L;
the Transformer baseline recomputes its whole window (up to its context of 256) per token.

    PYTHONPATH=src python benchmarks/bench_generation.py --lengths 16 256 1024 4096 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from minrnn.models import build_model
from minrnn.tasks import shakespeare
from minrnn.tasks.base import fresh_run_config


def time_per_token(model: torch.nn.Module, lengths: list[int], tokens: int, vocab: int) -> dict[int, list[float]]:
    """Seconds of each of `tokens` steps after a prompt of each length. The lengths take turns
    step by step, so a busy machine slows them all alike and the medians compare."""
    runs = {}
    with torch.no_grad():
        for length in lengths:
            prompt = torch.randint(0, vocab, (1, length), generator=torch.Generator().manual_seed(length))
            window = getattr(model.config, "context", None)  # the Transformer's; RNNs have none
            if window is not None and length > window:
                prompt = prompt[:, -window:]
            logits, state = model(prompt)
            runs[length] = [logits[:, -1].argmax(-1), state]
        times: dict[int, list[float]] = {n: [] for n in lengths}
        for _ in range(tokens):
            for length, run in runs.items():
                t0 = time.perf_counter()
                logits, run[1] = model.step(run[0], run[1])
                run[0] = logits.argmax(-1)
                times[length].append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", default=list(shakespeare.MODEL_KINDS))
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 256, 1024, 4096])
    parser.add_argument("--tokens", type=int, default=100, help="timed steps per (kind, length)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = []
    print(f"ms per token (median of {args.tokens} steps), {args.threads} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"{'model':<12}{'params':>12}" + "".join(f"{'L=' + str(n):>12}" for n in args.lengths) + f"{'ratio':>8}")
    for kind in args.kinds:
        config = fresh_run_config(shakespeare, "shakespeare", "paper", {}, kind)
        torch.manual_seed(0)
        model = build_model(config["arch"], config["model"]).eval()
        params = sum(p.numel() for p in set(model.parameters()))
        medians = []
        for length, times in time_per_token(model, args.lengths, args.tokens, 65).items():
            medians.append(statistics.median(times) * 1e3)
            results.append({"kind": kind, "context": length, "median_ms": medians[-1], "tokens": args.tokens})
        ratio = medians[-1] / medians[0]  # longest over shortest context
        print(f"{kind:<12}{params:>12,}" + "".join(f"{m:>12.3f}" for m in medians) + f"{ratio:>8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "torch": torch.__version__, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
