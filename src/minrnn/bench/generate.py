"""Inference runtime (the paper's claim that a minRNN generates in O(1) per token): time per
generated token against the context already read, for every LM model kind of the Shakespeare task
(`shakespeare.MODEL_KINDS`; mamba where the `mamba` extra is installed, float32 weights only).

For each thread count, model kind and batch size B, the model (random weights: the time does not
depend on them) holds the state after a context of L tokens, then generates ``tokens`` tokens one
`step` at a time (greedy, each step from the previous step's state); the contexts take turns
step by step, so a busy machine slows them alike. Reported: the median time per step (ms), the
tokens per second (B / time), and for the minRNN kinds the *matmul floor*: the model's own Linear
weights applied to inputs of the step's shapes (B, in_features), back to back, which no step can
beat, and the ratio of the step to it. The op-by-op reference step of the minRNN kinds
(`MinRNNLM.reference_step`, what `step` ran before the fused path) is timed beside it at the
shortest context. Mamba steps through its own recurrent step (`MambaLM.step`, mambapy's
`Mamba.step`: O(1) state per token, like the minRNN kinds).

How a context of L tokens is made: by reading a random prompt of L tokens in parallel mode when
B x L <= ``prefill_tokens``; otherwise the state is synthetic: a recurrent model's state has the
same size whatever L (it is read from a prompt of ``prefill_tokens // B`` tokens), and the
Transformer's KV cache is filled with random keys and values of length L (attention costs the same
for any values). Each row says which. The Transformer's position table is sized to hold the
longest context plus the generated tokens, so its cache never slides (its `step` is then one new
position against the cache); rows whose cache would exceed ``max_cache_gib`` are skipped.

Usage: ``minrnn bench generate --batches 1,8,64 --contexts 16,256,1024,4096 --threads 1,2``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from minrnn.bench.common import format_table, num_threads, result_path, write_json
from minrnn.models import build_model
from minrnn.models.baselines import KVCache, TransformerLM, _KVStore
from minrnn.models.lm import MinRNNLM
from minrnn.models.registry import missing_dependency
from minrnn.tasks import shakespeare
from minrnn.train.machine import machine_info

# The LM kinds, at the sizes of a Shakespeare preset (the task decides which kinds it trains).
KINDS = shakespeare.MODEL_KINDS
WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Kinds whose step runs with float32 weights only: mambapy's Mamba step computes A and D in float32
# and multiplies them with the weights' dtype (a bf16 model fails there).
FLOAT32_ONLY = ("mamba",)
# Mamba's parallel read (mambapy's pscan) holds several (B, L, expand * D, d_state) float32 tensors:
# at the paper size ~0.5 GB per 1000 tokens (8.4 GB peak for a 64 x 256 prompt), so its prompt is
# read in chunks of this many tokens (B x chunk length), the state carried from chunk to chunk.
MAMBA_CHUNK_TOKENS = 2048


def available_kinds(dtype: str = "float32") -> list[str]:
    """The kinds that run here with ``dtype`` weights: their optional dependencies import (mamba:
    mambapy) and they take that dtype."""
    return [k for k in KINDS if missing_dependency(k) is None and (dtype == "float32" or k not in FLOAT32_ONLY)]


@dataclass
class GenerateConfig:
    kinds: list[str] | None = None  # None: `available_kinds(dtype)`
    batches: list[int] = field(default_factory=lambda: [1, 8, 64])
    contexts: list[int] = field(default_factory=lambda: [16, 64, 256, 1024, 4096])
    threads: list[int] = field(default_factory=lambda: [1, 2])
    tokens: int = 20  # timed steps per (kind, batch, context)
    warmup: int = 2
    dtype: str = "float32"  # the weights'; minRNN states stay float32
    preset: str = "paper"  # the shakespeare preset whose model sizes are used
    model: dict = field(default_factory=dict)  # overrides of the preset's model settings (tests: tiny sizes)
    prefill_tokens: int = 16384  # read at most B x L tokens in parallel mode; beyond, synthetic state
    max_cache_gib: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batches", "contexts", "threads"):
            values = getattr(self, name)
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{name} must be a non-empty list of positive ints, got {values!r}")
        if self.dtype not in WEIGHT_DTYPES:
            raise ValueError(f"dtype must be one of {list(WEIGHT_DTYPES)}, got {self.dtype!r}")
        if self.kinds is None:
            self.kinds = available_kinds(self.dtype)
        unknown = [k for k in self.kinds if k not in KINDS]
        if not self.kinds or unknown:
            raise ValueError(f"kinds must be a non-empty list of {list(KINDS)}, got {self.kinds!r}")
        for kind in self.kinds:  # before any kind is timed, not when its turn comes
            if (hint := missing_dependency(kind)) is not None:
                raise ImportError(hint)
        if self.dtype != "float32" and (only := [k for k in self.kinds if k in FLOAT32_ONLY]):
            raise ValueError(f"{', '.join(only)} runs with float32 weights only; drop it from kinds or use dtype float32")
        if self.tokens < 1 or self.warmup < 0:
            raise ValueError(f"need tokens >= 1 and warmup >= 0, got tokens={self.tokens}, warmup={self.warmup}")
        if self.prefill_tokens < 1:
            raise ValueError(f"prefill_tokens must be >= 1, got {self.prefill_tokens}")
        if not self.max_cache_gib > 0:
            raise ValueError(f"max_cache_gib must be > 0, got {self.max_cache_gib}")


def cpu_flags() -> dict[str, bool]:
    """Whether this CPU has the bfloat16 instructions that make bf16 matmuls pay (from
    /proc/cpuinfo; all False where it cannot be read)."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        words = set()
    return {name: name in words for name in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}


def build(kind: str, cfg: GenerateConfig) -> nn.Module:
    from minrnn.tasks.base import fresh_run_config

    # The Transformer's window holds the longest context plus everything generated after it.
    window = max(cfg.contexts) + cfg.tokens + cfg.warmup + 2
    config = fresh_run_config(shakespeare, "shakespeare", cfg.preset, dict(cfg.model), kind)
    if kind == "transformer":
        config["model"]["context"] = window
    torch.manual_seed(cfg.seed)
    return build_model(config["arch"], config["model"]).to(WEIGHT_DTYPES[cfg.dtype]).eval()


def linear_floor(model: nn.Module, batch: int) -> Callable[[], None]:
    """The model's Linear layers applied to (batch, in_features) inputs, one after another."""
    pairs = [(m, torch.randn(batch, m.in_features, dtype=m.weight.dtype)) for m in model.modules() if isinstance(m, nn.Linear)]

    def floor() -> None:
        for m, x in pairs:
            nn.functional.linear(x, m.weight, m.bias)

    return floor


def kv_bytes(model: TransformerLM, batch: int, length: int) -> int:
    cfg = model.config
    return 2 * cfg.n_layers * batch * length * cfg.d_model * model.head.weight.element_size()


def synthetic_cache(model: TransformerLM, batch: int, length: int, gen: torch.Generator) -> KVCache:
    """A KV cache of ``length`` random tokens with random keys and values."""
    cfg = model.config
    heads, hd = cfg.n_heads, cfg.d_model // cfg.n_heads
    dtype = model.head.weight.dtype
    store = _KVStore(cfg.n_layers)
    store.tokens = torch.randint(0, cfg.vocab_size, (batch, length), generator=gen)
    store.keys = [torch.randn(batch, heads, length, hd, generator=gen).to(dtype) for _ in range(cfg.n_layers)]
    store.values = [torch.randn(batch, heads, length, hd, generator=gen).to(dtype) for _ in range(cfg.n_layers)]
    store.filled = length
    return KVCache(store.tokens, store)


def read_prompt(model: nn.Module, kind: str, idx: torch.Tensor):
    """(last logits (B, V), state) after reading ``idx`` (B, L) in parallel mode. Mamba reads it
    in chunks of `MAMBA_CHUNK_TOKENS` (B x chunk) tokens, each from the state the previous left."""
    if kind != "mamba":
        logits, state = model(idx)
        return logits[:, -1], state
    state = None
    for chunk in idx.split(max(1, MAMBA_CHUNK_TOKENS // idx.shape[0]), dim=1):
        logits, state = model(chunk, state)
    return logits[:, -1], state


def context_state(model: nn.Module, kind: str, batch: int, length: int, cfg: GenerateConfig, gen: torch.Generator):
    """(last logits (B, V), state after ``length`` tokens, how it was made)."""
    vocab = model.config.vocab_size
    if batch * length <= cfg.prefill_tokens:
        logits, state = read_prompt(model, kind, torch.randint(0, vocab, (batch, length), generator=gen))
        return logits, state, "prompt"
    if kind == "transformer":
        state = synthetic_cache(model, batch, length, gen)
        return torch.zeros(batch, vocab), state, "synthetic"
    short = max(1, cfg.prefill_tokens // batch)
    logits, state = read_prompt(model, kind, torch.randint(0, vocab, (batch, short), generator=gen))
    return logits, state, f"synthetic (state of a {short}-token prompt: same size)"


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def measure(model: nn.Module, kind: str, batch: int, cfg: GenerateConfig, log: Callable[[str], None]) -> list[dict]:
    """Rows for one (kind, batch) at the current thread count."""
    gen = torch.Generator().manual_seed(cfg.seed)
    runs, skipped = {}, []
    for length in cfg.contexts:
        if kind == "transformer" and kv_bytes(model, batch, length + cfg.tokens + cfg.warmup) > cfg.max_cache_gib * 2**30:
            skipped.append(length)
            continue
        logits, state, how = context_state(model, kind, batch, length, cfg, gen)
        runs[length] = [logits.argmax(-1), state, how]
    fns: dict[object, Callable[[], None]] = {}
    for length, run in runs.items():
        def step(run=run) -> None:
            logits, run[1] = model.step(run[0], run[1])
            run[0] = logits.argmax(-1)

        fns[length] = step
    is_minrnn = isinstance(model, MinRNNLM)
    if is_minrnn:
        fns["floor"] = linear_floor(model, batch)
        token = torch.zeros(batch, dtype=torch.long)
        ref_state = model.init_state(batch)
        fns["reference"] = lambda: model.reference_step(token, ref_state)
    times: dict[object, list[float]] = {k: [] for k in fns}
    for i in range(cfg.warmup + cfg.tokens):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= cfg.warmup:
                times[name].append(time.perf_counter() - t0)
    floor_ms = _median_ms(times["floor"]) if is_minrnn else None
    reference_ms = _median_ms(times["reference"]) if is_minrnn else None
    rows = []
    for length in cfg.contexts:
        row = {"kind": kind, "batch": batch, "threads": torch.get_num_threads(), "context": length, "tokens": cfg.tokens}
        if length in skipped:
            row["skipped"] = f"KV cache over max_cache_gib={cfg.max_cache_gib}"
        else:
            ms = _median_ms(times[length])
            row.update(median_ms=ms, tokens_per_s=batch / (ms / 1e3), state=runs[length][2])
            if is_minrnn:
                row.update(floor_ms=floor_ms, ratio_to_floor=ms / floor_ms, reference_ms=reference_ms)
        rows.append(row)
    shown = ", ".join(f"L={r['context']}: {r['median_ms']:.3f} ms" if "median_ms" in r else f"L={r['context']}: skipped" for r in rows)
    log(f"  {kind:<12} B={batch:<3} {shown}" + (f"; floor {floor_ms:.3f} ms, reference {reference_ms:.3f} ms" if is_minrnn else ""))
    return rows


def run_generate(cfg: GenerateConfig, log: Callable[[str], None] | None = None) -> dict:
    log = log or (lambda line: None)
    machine = machine_info(torch.device("cpu"))
    rows = []
    params = {}
    with torch.inference_mode():
        for kind in cfg.kinds:
            model = build(kind, cfg)
            params[kind] = sum(p.numel() for p in set(model.parameters()))
            for threads in cfg.threads:
                with num_threads(threads):
                    log(f"{kind}, {threads} thread(s)")
                    for batch in cfg.batches:
                        rows.extend(measure(model, kind, batch, cfg, log))
    notes = [
        "Per-token time = median wall time of one `step` (greedy, state carried from step to step) after a "
        "context of L tokens; tokens/s = B / that time.",
        "floor = the model's own nn.Linear weights applied to (B, in_features) inputs one after another "
        "(torch.nn.functional.linear), timed in the same rounds; ratio = step / floor.",
        "reference = MinRNNLM.reference_step (op by op in PyTorch, what `step` ran before the fused CPU path), "
        "timed in the same rounds.",
        "The Transformer's position table covers the longest context plus the generated tokens, so its KV "
        "cache never slides.",
    ]
    if "mamba" in cfg.kinds:
        notes.append(f"mamba = MambaLM (mambapy's blocks); its prompt is read by MambaLM.forward (mambapy's parallel scan, "
                     f"{MAMBA_CHUNK_TOKENS} tokens (B x chunk) at a time, state carried) and each token by MambaLM.step "
                     "(mambapy's recurrent step); no floor is timed for it.")
    return {"config": asdict(cfg), "machine": machine, "cpu_flags": cpu_flags(), "params": params, "rows": rows, "notes": notes}


def format_generate_table(result: dict) -> str:
    """One table per (threads, batch): per-token ms at each context, tokens/s at the shortest
    context, and the minRNN kinds' floor and ratio."""
    cfg = result["config"]
    contexts = cfg["contexts"]
    out = []
    flags = result["cpu_flags"]
    out.append(f"weights {cfg['dtype']}; CPU bf16 support: avx512_bf16={flags['avx512_bf16']}, amx_bf16={flags['amx_bf16']}")
    for threads in cfg["threads"]:
        for batch in cfg["batches"]:
            rows = [r for r in result["rows"] if r["threads"] == threads and r["batch"] == batch]
            table = []
            for kind in cfg["kinds"]:
                mine = {r["context"]: r for r in rows if r["kind"] == kind}
                if not mine:
                    continue
                first = next((mine[c] for c in contexts if "median_ms" in mine[c]), None)
                cells = [f"{mine[c]['median_ms']:.3f}" if "median_ms" in mine[c] else None for c in contexts]
                floor = first.get("floor_ms") if first else None
                ratios = [mine[c]["ratio_to_floor"] for c in contexts if mine[c].get("ratio_to_floor") is not None]
                table.append([
                    kind, *cells,
                    None if first is None else f"{first['tokens_per_s']:.0f}",
                    None if floor is None else f"{floor:.3f}",
                    None if not ratios else f"{statistics.median(ratios):.2f}",
                    None if first is None or first.get("reference_ms") is None else f"{first['reference_ms']:.3f}",
                ])
            headers = ["model", *(f"L={c} ms" for c in contexts), f"tok/s L={contexts[0]}", "floor ms", "step/floor", "reference ms"]
            out.append(f"\nthreads={threads}, batch={batch} (ms per generated token, median)")
            out.append(format_table(headers, table))
    return "\n".join(out)


def plot_generate(result: dict, path: str | Path) -> None:
    """Per-token ms against context, one panel per batch size; needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result["config"]
    batches = cfg["batches"]
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 4), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        for threads, style in zip(cfg["threads"], ("-", "--", ":", "-.")):
            for i, kind in enumerate(cfg["kinds"]):
                rows = [r for r in result["rows"] if r["kind"] == kind and r["batch"] == batch and r["threads"] == threads and "median_ms" in r]
                if not rows:
                    continue
                color = f"C{i}"
                ax.plot([r["context"] for r in rows], [r["median_ms"] for r in rows], style, marker="o", color=color,
                        label=f"{kind}, {threads} thr")
                if rows[0].get("floor_ms") is not None and threads == cfg["threads"][0]:
                    ax.axhline(rows[0]["floor_ms"], color=color, linestyle=":", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context L (tokens already read)")
        ax.set_ylabel("ms per generated token")
        ax.set_title(f"batch {batch} (dotted: minRNN matmul floor)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    machine = result["machine"]
    fig.suptitle(f"minrnn generation, weights {cfg['dtype']}, {machine['cpu_model']}, torch {machine['versions']['torch']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_and_save(cfg: GenerateConfig, out_dir: str | Path, plot: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Run, then write JSON, the table as .md, and the PNG (if asked and matplotlib is installed)."""
    result = run_generate(cfg, log)
    json_path = result_path(out_dir, "generate", torch.device("cpu"), "json")
    result["files"] = {"json": str(json_path), "md": str(json_path.with_suffix(".md"))}
    if plot:
        try:
            png = json_path.with_suffix(".png")
            plot_generate(result, png)
            result["files"]["png"] = str(png)
        except ImportError:
            result["files"]["png"] = None
            result["notes"].append("no plot: matplotlib is not installed (pip install -e '.[plot]').")
    result["table"] = format_generate_table(result)
    write_json(json_path, result)
    Path(result["files"]["md"]).write_text("```\n" + result["table"] + "\n```\n\n" + "\n".join(f"- {n}" for n in result["notes"]) + "\n")
    return result
