"""Generation: step mode equals parallel mode for every model kind; seeded sampling repeats."""

from __future__ import annotations

import pytest
import torch

from minrnn.cli import main
from minrnn.generation import generate, sample_next
from minrnn.models import LMConfig, MambaConfig, MambaLM, MinRNNLM, RNNConfig, RNNLM, TransformerConfig, TransformerLM
from tests.helpers import kind_params


def make(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind in ("mingru", "minlstm"):
        cfg = LMConfig(vocab_size=11, d_model=12, n_layers=2, cell=kind, expansion=1.5, conv_kernel=4, dropout=0.1)
        model = MinRNNLM(cfg)
    elif kind == "mamba":
        model = MambaLM(MambaConfig(vocab_size=11, d_model=12, n_layers=2, d_state=5, dropout=0.1))
    elif kind == "transformer":
        model = TransformerLM(TransformerConfig(vocab_size=11, d_model=12, n_layers=2, n_heads=3, context=64, dropout=0.1))
    else:
        model = RNNLM(RNNConfig(vocab_size=11, d_model=12, n_layers=2, cell=kind, dropout=0.1))
    return model.double().eval()


KINDS = kind_params(["mingru", "minlstm", "transformer", "gru", "lstm", "mamba"])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prefill", [0, 1, 9])
def test_step_logits_equal_parallel_logits(kind, prefill):
    model = make(kind)
    idx = torch.randint(0, 11, (3, 23))
    with torch.no_grad():
        full, _ = model(idx)
        # the first `prefill` tokens in parallel mode, the rest one step at a time
        logits, state = model(idx[:, :prefill]) if prefill else (None, None)
        steps = [] if logits is None else list(logits.unbind(1))
        for t in range(prefill, idx.shape[1]):
            out, state = model.step(idx[:, t], state)
            steps.append(out)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_forward_with_state_equals_one_pass(kind):
    model = make(kind)
    idx = torch.randint(0, 11, (2, 30))
    with torch.no_grad():
        full, _ = model(idx)
        a, state = model(idx[:, :13])
        b, _ = model(idx[:, 13:], state)
    torch.testing.assert_close(torch.cat([a, b], 1), full, rtol=1e-10, atol=1e-10)


def test_transformer_window_slides_past_its_context():
    model = make("transformer")  # context 64
    idx = torch.randint(0, 11, (2, 100))
    with torch.no_grad():
        state, outs = None, []
        for t in range(idx.shape[1]):
            out, state = model.step(idx[:, t], state)
            outs.append(out)
        expected, _ = model(idx[:, -64:])  # the last token sees exactly the last 64 tokens
    assert state.tokens.shape == (2, 63) and not state.cached  # slid: re-encodes from its tokens
    torch.testing.assert_close(outs[-1], expected[:, -1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_sampling_is_reproducible(kind):
    model = make(kind)
    prompt = torch.randint(0, 11, (2, 5))

    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        return torch.stack(list(generate(model, prompt, 40, temperature=1.0, top_k=6, generator=gen)), 1)

    a, b, c = draw(3), draw(3), draw(4)
    assert a.shape == (2, 40)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sample_next_top_k_and_greedy():
    logits = torch.randn(4, 50)
    top3 = logits.topk(3, dim=-1).indices
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        token = sample_next(logits, temperature=2.0, top_k=3, generator=gen)
        assert (top3 == token.unsqueeze(1)).any(1).all()
    assert torch.equal(sample_next(logits, temperature=0.0), logits.argmax(-1))
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, temperature=-1.0)


def test_generate_rejects_an_empty_prompt():
    with pytest.raises(ValueError, match=r"\(B, T0\)"):
        next(generate(make("mingru"), torch.zeros(1, 0, dtype=torch.long), 3))


def test_cli_sample_is_seeded(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--context", "32", "--eval-iters", "1"]
    assert main(["train", "shakespeare", "--out", str(out), *flags, "--steps", "2", "--eval-every", "2"]) == 0
    capsys.readouterr()

    def sample(*args):
        assert main(["sample", str(out), "--prompt", "ROMEO:", "--tokens", "60", *args]) == 0
        return capsys.readouterr().out

    a, b, c = sample("--seed", "5"), sample("--seed", "5"), sample("--seed", "6")
    assert a.startswith("ROMEO:") and len(a) == len("ROMEO:") + 60 + 1
    assert a == b and a != c
    assert sample("--temperature", "0", "--checkpoint", "latest") == sample("--temperature", "0", "--seed", "9")
    assert main(["sample", str(out), "--prompt", "\u00e9"]) == 2
    assert "outside the vocabulary" in capsys.readouterr().err


# --- model.generate ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_generate_equals_the_argmax_of_the_parallel_forward_rolled_out(kind):
    model = make(kind)
    prompt = torch.randint(0, 11, (3, 4))
    out = model.generate(prompt, 12, temperature=0)
    seq = prompt
    with torch.no_grad():
        for _ in range(12):
            seq = torch.cat([seq, model(seq)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert out.shape == (3, 16) and torch.equal(out, seq)


@pytest.mark.parametrize("kind", KINDS)
def test_generate_equals_step_by_step_sampling_with_the_same_seed(kind):
    model = make(kind).train()  # generate runs in eval mode and restores the mode
    prompt = torch.randint(0, 11, (2, 5))
    out = model.generate(prompt, 20, temperature=0.9, top_k=7, top_p=0.9, seed=11)
    assert model.training
    model.eval()
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        logits, state = model(prompt)
        logits, tokens = logits[:, -1], []
        for _ in range(20):
            tokens.append(sample_next(logits, 0.9, 7, gen, top_p=0.9))
            logits, state = model.step(tokens[-1], state)
    assert torch.equal(out, torch.cat([prompt, torch.stack(tokens, 1)], 1))
    assert torch.equal(model.generate(prompt, 20, temperature=0.9, top_k=7, top_p=0.9, seed=11), out)
    assert not torch.equal(model.generate(prompt, 20, temperature=0.9, seed=12), model.generate(prompt, 20, temperature=0.9, seed=13))


def test_generate_streams_through_an_iterator_and_a_callback():
    model = make("mingru")
    prompt = [3, 1, 4]  # one sequence as a list: 1-D in, 1-D out
    seen = []
    out = model.generate(prompt, 8, seed=0, callback=seen.append)
    assert out.shape == (11,) and out[:3].tolist() == prompt
    assert torch.equal(torch.stack(seen), out[3:])
    stream = model.generate(prompt, 8, seed=0, stream=True)
    assert torch.equal(torch.stack(list(stream)), out[3:])


def test_generate_past_the_transformers_context_slides_its_window():
    model = make("transformer")  # context 64
    prompt = torch.randint(0, 11, (2, 70))
    out = model.generate(prompt, 3, temperature=0)
    with torch.no_grad():
        first = model(prompt[:, -64:])[0][:, -1].argmax(-1)
    assert torch.equal(out[:, 70], first) and out.shape == (2, 73)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]])
    logits = probs.log()
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, 1.0, top_p=0.75, generator=gen) for _ in range(400)])
    assert set(draws[:, 0].tolist()) == {0, 1} and set(draws[:, 1].tolist()) == {2, 3}  # 0.5 + 0.3 reach 0.75
    share = (draws[:, 0] == 0).float().mean().item()
    assert abs(share - 0.5 / 0.8) < 0.1  # renormalised within the nucleus
    tiny = torch.stack([sample_next(logits, 1.0, top_p=0.01, generator=gen) for _ in range(20)])
    assert torch.equal(tiny, logits.argmax(-1).expand(20, 2))  # the most likely token always stays
    with pytest.raises(ValueError, match="top_p"):
        sample_next(logits, 1.0, top_p=0.0)


def test_eos_stops_each_row_and_pads_it():
    model = make("lstm")
    prompt = torch.randint(0, 11, (4, 3))
    free = model.generate(prompt, 30, temperature=0)[:, 3:]
    eos = int(free[0, 5])  # a token row 0 produces at step 5 (maybe earlier)
    out = model.generate(prompt, 30, temperature=0, eos=eos)[:, 3:]
    for row, new in zip(free, out):
        hits = (row == eos).nonzero()
        if len(hits):
            k = int(hits[0])
            assert torch.equal(new[: k + 1], row[: k + 1]) and bool((new[k:] == eos).all())
        else:
            assert torch.equal(new, row[: len(new)])
    assert out.shape[1] == 30 or bool((out[:, -1] == eos).all())  # stopped early only when every row ended
    with pytest.raises(ValueError, match="eos"):
        model.generate(prompt, 3, eos=-1)


@pytest.mark.parametrize("prompt, message", [
    (torch.randn(2, 3), "integer token ids"),
    ([1.5, 2], "list of ints"),
    (torch.zeros(2, 0, dtype=torch.long), r"\(B, T0\) with T0 >= 1"),
    (torch.full((1, 3), 11), "outside \\[0, vocab_size=11\\)"),
])
def test_generate_refuses_bad_prompts(prompt, message):
    with pytest.raises(ValueError, match=message):
        make("mingru").generate(prompt, 3)


# --- the Transformer's KV cache -------------------------------------------------------------------


def _qkv_lengths(model) -> list[int]:
    """Records the T of every call of the first layer's qkv projection."""
    seen: list[int] = []
    model.blocks[0].attn.qkv.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    return seen


def test_transformer_step_reads_its_cache_instead_of_re_encoding():
    model = make("transformer")  # context 64
    idx = torch.randint(0, 11, (2, 40))
    seen = _qkv_lengths(model)
    with torch.no_grad():
        full, _ = model(idx)
        logits, state = model(idx[:, :7])
        outs = list(logits.unbind(1))
        for t in range(7, 40):
            assert state.cached and len(state) == t
            out, state = model.step(idx[:, t], state)
            outs.append(out)
    assert seen[1:] == [7] + [1] * 33  # the prompt once, then one position per step
    torch.testing.assert_close(torch.stack(outs, 1), full, rtol=1e-10, atol=1e-10)


def test_transformer_cache_branches_and_chunks_exactly():
    """Two steps from one state (branching) do not corrupt each other; a chunk read against a
    cache equals reading everything at once; the cache's tokens are a valid tokens-only state."""
    model = make("transformer")
    idx = torch.randint(0, 11, (3, 30))
    with torch.no_grad():
        full, _ = model(idx)
        _, state = model(idx[:, :10])
        a, state_a = model.step(idx[:, 10], state)
        b, state_b = model.step((idx[:, 10] + 1) % 11, state)  # branch from the same state
        a2, _ = model.step(idx[:, 11], state_a)
        alt, _ = model(torch.cat([idx[:, :10], (idx[:, 10:11] + 1) % 11], 1))
        chunk, _ = model(idx[:, 11:30], state_a)
        from_tokens, _ = model(idx[:, 11:30], state_a.tokens)
    torch.testing.assert_close(a, full[:, 10], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a2, full[:, 11], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(b, alt[:, -1], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(chunk, full[:, 11:], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(from_tokens, full[:, 11:], rtol=1e-10, atol=1e-10)


def test_transformer_chunk_that_overflows_the_window_re_encodes():
    model = make("transformer")  # context 64
    idx = torch.randint(0, 11, (2, 90))
    with torch.no_grad():
        _, state = model(idx[:, :50])
        out, state2 = model(idx[:, 50:70], state)  # 70 > 64: the window slides
        expected, _ = model(idx[:, 6:70])
    torch.testing.assert_close(out, expected[:, -20:], rtol=1e-10, atol=1e-10)
    assert not state2.cached and torch.equal(state2.tokens, idx[:, 7:70])
