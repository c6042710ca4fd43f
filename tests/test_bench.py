"""The benchmark harness: loop baselines are real GRU/LSTMs, runs go end to end, results are complete.

Tiny shapes only; nothing here asserts on a time (timings live in the benchmark's output).
"""

import json
import math

import pytest
import torch
from torch import nn

from minrnn.bench import runtime, scan
from minrnn.bench.baselines import LoopGRU, LoopLSTM
from minrnn.bench.common import num_threads, peak_memory, time_interleaved, time_steps
from minrnn.cli import parse_list
from minrnn.cli import main
from tests.helpers import HAS_MAMBAPY, needs_mambapy

TINY = dict(seq_lens=[8, 16], batch=2, d_in=8, d_h=8, threads=[1], repeats=1)
MACHINE_KEYS = {"cpu_model", "cpu_count", "device", "gpu", "versions", "load_average", "time_utc"}


# ----------------------------------------------------------------------------- loop baselines


@pytest.mark.parametrize("T", [1, 7])
def test_loop_gru_matches_nn_gru(T):
    gru = nn.GRU(5, 6, batch_first=True, dtype=torch.float64)
    loop = LoopGRU.from_torch(gru)
    x = torch.randn(3, T, 5, dtype=torch.float64, requires_grad=True)
    out, h_n = loop(x)
    ref, ref_h = gru(x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_n, ref_h, rtol=1e-10, atol=1e-12)
    # Same gradients too: the backward the benchmark times is a GRU's backward.
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, loop.weight_ih, loop.weight_hh, loop.bias_hh], g)
    ref_grads = torch.autograd.grad(ref, [x, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_hh_l0], g)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T", [1, 7])
def test_loop_lstm_matches_nn_lstm(T):
    lstm = nn.LSTM(5, 6, batch_first=True, dtype=torch.float64)
    loop = LoopLSTM.from_torch(lstm)
    x = torch.randn(3, T, 5, dtype=torch.float64, requires_grad=True)
    out, (h_n, c_n) = loop(x)
    ref, (ref_h, ref_c) = lstm(x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_n, ref_h, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c_n, ref_c, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, loop.weight_ih, loop.weight_hh, loop.bias_ih], g)
    ref_grads = torch.autograd.grad(ref, [x, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0], g)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_loop_baselines_reject_bad_input():
    with pytest.raises(ValueError, match="one-layer"):
        LoopGRU.from_torch(nn.GRU(4, 4, num_layers=2))
    with pytest.raises(ValueError, match="input_size=4"):
        LoopLSTM(4, 3)(torch.randn(2, 5, 3))


# ----------------------------------------------------------------------------- helpers


def test_time_steps_budget_and_skip():
    calls = []
    # Predicted to overrun: nothing runs, the result says why.
    t = time_steps(lambda: calls.append(1), torch.device("cpu"), repeats=3, budget_s=1.0, predicted_s=2.0)
    assert calls == [] and t.times_s == [] and t.median_s is None and "budget" in t.skipped
    # A zero budget still gives one timed call after the warm-up, then stops.
    t = time_steps(lambda: calls.append(1), torch.device("cpu"), repeats=5, warmup=2, budget_s=0.0)
    assert len(calls) == 3 and len(t.warmup_s) == 2 and len(t.times_s) == 1 and t.skipped is None
    # No budget: all repeats.
    t = time_steps(lambda: None, torch.device("cpu"), repeats=4, warmup=0)
    assert len(t.times_s) == 4 and t.median_s >= 0


def test_time_interleaved_rounds():
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    t = time_interleaved(steps, torch.device("cpu"), repeats=2, warmup=1, predicted_s={"c": 5.0}, budget_s=1.0)
    # Warm-ups first, then rounds that call each once; "c" is predicted past the budget.
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert t["c"].skipped and t["c"].times_s == [] and len(t["a"].times_s) == len(t["a"].cpu_times_s) == 2


def test_peak_memory_is_the_running_peak():
    mib = 2**18  # float32 elements in 1 MiB

    def two_alive():
        a = torch.ones(mib)
        b = torch.ones(mib)
        return a.sum() + b.sum()

    def one_at_a_time():
        torch.ones(mib).sum()
        torch.ones(mib).sum()

    cpu = torch.device("cpu")
    two, one = peak_memory(two_alive, cpu), peak_memory(one_at_a_time, cpu)
    assert 2 * 2**20 <= two < 2 * 2**20 + 2**16
    assert 2**20 <= one < 2**20 + 2**16


def test_peak_memory_counts_the_cpu_ops_cached_outputs():
    # The CPU ops' large outputs come from a cache of numpy buffers, which the profiler trace does
    # not see: peak_memory turns it off for its step, so the layer counts h and d(pre) (and then
    # more than its Linear alone) however warm the cache is.
    from minrnn import MinGRU

    layer, x = MinGRU(64, 64, batch_first=True), torch.randn(8, 2100, 64, requires_grad=True)  # h: 4.3 MB
    g, g_pre = torch.randn(8, 2100, 64), torch.randn(8, 2100, 128)

    def step():
        out, _ = layer(x)
        out.backward(g)

    def linear_step():
        layer.proj[0](x).backward(g_pre)

    for _ in range(2):
        step()  # warm: the buffers are cached now
    cpu = torch.device("cpu")
    h_bytes = 8 * 2100 * 64 * 4
    assert peak_memory(step, cpu) >= peak_memory(linear_step, cpu) + h_bytes


def test_num_threads_sets_torch_and_restores():
    # Only torch's count: the fused CPU kernels follow it, and numba's threading layer is left alone.
    before = torch.get_num_threads()
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with num_threads(0):
            pass


def test_parse_list():
    assert parse_list("64, 128,256", int) == [64, 128, 256]
    with pytest.raises(ValueError, match="list of int"):
        parse_list("64,x", int)
    with pytest.raises(ValueError):
        parse_list("a,,b")


# ----------------------------------------------------------------------------- runtime benchmark


def test_runtime_end_to_end(tmp_path):
    cfg = runtime.RuntimeConfig(**TINY, backends=["log"])
    result = runtime.run_and_save(cfg, tmp_path, plot=False)
    data = json.loads(open(result["files"]["json"]).read())
    assert MACHINE_KEYS <= set(data["machine"]) and data["machine"]["versions"]["torch"] == torch.__version__
    assert data["config"]["seq_lens"] == [8, 16] and data["notes"]
    rows = {(m["model"], m["T"]) for m in data["measurements"]}
    names = ["nn.GRU", "minGRU", "minGRU[log]", "Linear(minGRU)", "loop GRU",
             "nn.LSTM", "minLSTM", "minLSTM[log]", "Linear(minLSTM)", "loop LSTM"]  # fmt: skip
    assert rows == {(n, T) for n in names for T in (8, 16)}
    for m in data["measurements"]:
        assert m["skipped"] is None and m["threads"] == 1
        assert len(m["times_s"]) == len(m["cpu_times_s"]) == 1 and math.isfinite(m["median_s"]) and m["median_s"] > 0
        assert m["peak_bytes"] > 0  # every step allocates at least its output and gradients
    by_name = {m["model"]: m for m in data["measurements"] if m["T"] == 8}
    assert by_name["minGRU[log]"]["backend"] == "log" and by_name["minGRU"]["backend"] == data["default_backend"]
    assert by_name["minLSTM"]["floor"] == "Linear(minLSTM)" and by_name["minLSTM"]["ref"] == "nn.LSTM"
    assert by_name["minGRU"]["loop"] == "loop GRU"
    table = runtime.format_runtime_table(data)
    assert data["table"] == table  # the JSON keeps the printed table
    for n in names:
        assert n in table
    assert "skipped" not in table


def test_runtime_skips_past_budget(tmp_path):
    # Zero budget: T=8 runs one step, T=16 is predicted to overrun and is marked, not dropped.
    cfg = runtime.RuntimeConfig(**{**TINY, "repeats": 2}, models=["loop-gru", "gru"], budget_s=0.0, memory="none")
    data = runtime.run_runtime(cfg)
    by = {(m["model"], m["T"]): m for m in data["measurements"]}
    assert set(by) == {(n, T) for n in ("nn.GRU", "loop GRU") for T in (8, 16)}
    assert by["loop GRU", 8]["skipped"] is None and len(by["loop GRU", 8]["times_s"]) == 1
    assert by["loop GRU", 16]["median_s"] is None and "budget" in by["loop GRU", 16]["skipped"]
    assert by["loop GRU", 8]["peak_bytes"] is None  # memory="none"
    table = runtime.format_runtime_table(data)
    assert "skipped" in table and "fewer timed repeats" in table


def test_runtime_plot(tmp_path):
    pytest.importorskip("matplotlib")
    cfg = runtime.RuntimeConfig(**TINY, models=["mingru", "gru"])
    result = runtime.run_and_save(cfg, tmp_path)
    png = open(result["files"]["png"], "rb").read()
    assert png.startswith(b"\x89PNG")


def test_runtime_memory_rss(tmp_path):
    # The figure comes from a fresh process; nn.GRU's output and input gradient (B, T, 64) each must
    # be resident at its peak.
    cfg = runtime.RuntimeConfig(seq_lens=[256], batch=4, d_in=64, d_h=64, threads=[1], repeats=1, models=["gru"], memory="rss")
    data = runtime.run_runtime(cfg)
    assert data["memory_method"] == "rss" and any("VmHWM" in n for n in data["notes"])
    (m,) = data["measurements"]
    assert m["model"] == "nn.GRU" and m["peak_bytes"] >= 2 * 4 * 256 * 64 * 4


@pytest.mark.parametrize(
    "bad",
    [
        dict(models=["rwkv"]),
        dict(backends=["nope"]),
        dict(seq_lens=[0]),
        dict(threads=[]),
        dict(dtype="int8"),
        dict(memory="vms"),
        dict(memory="rss", device="cuda"),
    ],
)
def test_runtime_config_errors(bad):
    with pytest.raises(ValueError):
        runtime.RuntimeConfig(**bad).validate()


# ----------------------------------------------------------------------------- scan benchmark


def test_scan_end_to_end(tmp_path):
    cfg = scan.ScanConfig(batch=2, seq_len=16, hidden=8, threads=[1], repeats=1, copy_mib=1)
    result = scan.run_and_save(cfg, tmp_path)
    data = json.loads(open(result["files"]["json"]).read())
    assert MACHINE_KEYS <= set(data["machine"])
    assert len(data["bandwidth"]) == 1 and data["bandwidth"][0]["copy_gbps"] > 0
    keys = {(m["op"], m["backend"], m["pass"]) for m in data["measurements"]}
    assert keys == {(o, b, p) for o in scan.OPS for b in cfg.backends for p in ("fwd", "fwd+bwd")}
    for m in data["measurements"]:
        n = scan.TENSORS_MOVED[m["op"]][m["pass"] == "fwd+bwd"]
        assert m["bytes"] == n * 2 * 16 * 8 * 4
        assert m["gbps"] > 0 and m["fraction_of_copy"] > 0
    assert "copy bandwidth" in scan.format_scan_table(data)


# ----------------------------------------------------------------------------- CLI


def test_cli_bench_runtime_and_scan(tmp_path, capsys):
    tiny = ["--batch", "2", "--threads", "1", "--repeats", "1", "--out", str(tmp_path)]
    assert main(["bench", "runtime", "--seq-lens", "8", "--d-in", "8", "--d-h", "8", "--models", "gru,mingru", "--no-plot", *tiny]) == 0
    assert main(["bench", "scan", "--seq-len", "8", "--hidden", "4", "--ops", "linear_scan", "--backends", "torch", "--copy-mib", "1", *tiny]) == 0
    out = capsys.readouterr().out
    assert "minGRU" in out and "linear_scan" in out
    assert len(list(tmp_path.glob("runtime-cpu-*.json"))) == 1 and len(list(tmp_path.glob("scan-cpu-*.json"))) == 1


def test_cli_bench_bad_input(capsys):
    assert main(["bench", "runtime", "--models", "rwkv", "--seq-lens", "8"]) == 2
    assert "unknown model kind" in capsys.readouterr().err
    assert main(["bench", "scan", "--backends", "nope"]) == 2
    assert "unknown backend" in capsys.readouterr().err


# ----------------------------------------------------------------------------- generation


def test_bench_generate_smoke(tmp_path, capsys):
    """`minrnn bench generate` end to end on tiny sizes: every kind that runs here (mamba too where
    mambapy is installed), a prompt-read and a synthetic context, rows complete, floor and ratio on
    the minRNN rows, table and files written."""
    from minrnn.bench import generate

    args = ["bench", "generate", "--batches", "1,2", "--contexts", "3,40", "--threads", "1", "--tokens", "2", "--warmup", "1",
            "--d-model", "12", "--n-layers", "1", "--prefill-tokens", "40", "--no-plot", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "step/floor" in out and "avx512_bf16=" in out
    result = json.loads(next(tmp_path.glob("generate-cpu-*.json")).read_text())
    assert (tmp_path / next(tmp_path.glob("generate-cpu-*.json")).with_suffix(".md").name).exists()
    rows = result["rows"]
    kinds = set(generate.KINDS) - (set() if HAS_MAMBAPY else {"mamba"})
    assert result["config"]["kinds"] == [k for k in generate.KINDS if k in kinds]
    assert {r["kind"] for r in rows} == kinds
    assert len(rows) == len(kinds) * 2 * 2
    for r in rows:
        assert r["median_ms"] > 0 and r["tokens_per_s"] > 0
        assert r["state"] == ("prompt" if r["batch"] * r["context"] <= 40 else "synthetic") or r["state"].startswith("synthetic")
        assert ("floor_ms" in r) == (r["kind"] in ("mingru", "minlstm"))
    assert set(result["cpu_flags"]) >= {"avx512_bf16", "amx_bf16"}


@needs_mambapy
def test_bench_generate_reads_a_mamba_prompt_in_chunks_like_in_one_pass(monkeypatch):
    """Mamba's prompt, read in chunks (state carried; the last chunk shorter), leaves the logits
    and state of one parallel pass over it (float64)."""
    from minrnn.bench import generate

    cfg = generate.GenerateConfig(kinds=["mamba"], contexts=[10], tokens=1, warmup=0, model={"d_model": 8, "n_layers": 2})
    model = generate.build("mamba", cfg).double()
    idx = torch.randint(0, model.config.vocab_size, (2, 10))
    monkeypatch.setattr(generate, "MAMBA_CHUNK_TOKENS", 6)  # chunks of 3, 3, 3, 1 positions
    with torch.no_grad():
        logits, state = generate.read_prompt(model, "mamba", idx)
        ref_logits, ref_state = model(idx)
    torch.testing.assert_close(logits, ref_logits[:, -1])
    for (h, conv), (ref_h, ref_conv) in zip(state, ref_state, strict=True):
        torch.testing.assert_close(h, ref_h)
        torch.testing.assert_close(conv, ref_conv)


def test_bench_generate_synthetic_cache_steps_like_a_real_one():
    """The synthetic KV cache the benchmark uses for long contexts is a valid cache: a step on it
    attends to all its positions (same result as the forward over the same keys)."""
    from minrnn.bench.generate import GenerateConfig, build, synthetic_cache

    cfg = GenerateConfig(kinds=["transformer"], contexts=[6], tokens=1, warmup=0, model={"d_model": 12, "n_layers": 1})
    model = build("transformer", cfg).double()
    cache = synthetic_cache(model, 2, 6, torch.Generator().manual_seed(0))
    cache._store.keys = [k.double() for k in cache._store.keys]
    cache._store.values = [v.double() for v in cache._store.values]
    with torch.no_grad():
        logits, state = model.step(torch.tensor([1, 2]), cache)
    assert state.cached and len(state) == 7 and logits.shape == (2, model.config.vocab_size)
