"""Causal conv, residual block and LM: parallel mode == step mode, causality, state continuation."""

import pytest
import torch

from minrnn import CausalConv1d, LMConfig, MinRNNBlock, MinRNNLM
from minrnn.generation import generate, sample_next
from tests.helpers import HAS_MAMBAPY


def test_causal_conv_step_equals_forward_and_is_causal():
    conv = CausalConv1d(6, kernel_size=4)
    x = torch.randn(2, 9, 6)
    y, state = conv(x)
    s, steps = conv.init_state(2), []
    for x_t in x.unbind(1):
        y_t, s = conv.step(x_t, s)
        steps.append(y_t)
    assert (torch.stack(steps, 1) - y).abs().max() < 1e-6
    assert torch.equal(s, state)
    x2 = x.clone()
    x2[:, 5:] = torch.randn(2, 4, 6)  # changing the future leaves the past alone
    assert torch.equal(conv(x2)[0][:, :5], y[:, :5])


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("conv_kernel,mlp_ratio,expansion", [(4, 4.0, 2.0), (0, 0.0, 6.0), (3, 2.0, 1.0)])
def test_block_step_equals_forward(cell, conv_kernel, mlp_ratio, expansion):
    block = MinRNNBlock(8, cell=cell, expansion=expansion, conv_kernel=conv_kernel, mlp_ratio=mlp_ratio).eval()
    x = torch.randn(3, 12, 8)
    y, (conv_state, rnn_state) = block(x)
    state, steps = block.init_state(3), []
    for x_t in x.unbind(1):
        y_t, state = block.step(x_t, state)
        steps.append(y_t)
    assert (torch.stack(steps, 1) - y).abs().max() < 1e-5
    assert (state[1] - rnn_state).abs().max() < 1e-5


def _lm(cell="mingru", **kw):
    cfg = LMConfig(vocab_size=13, d_model=16, n_layers=2, cell=cell, expansion=2.0, dropout=0.0, **kw)
    return MinRNNLM(cfg).eval()


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_lm_step_logits_equal_parallel_logits(cell):
    model = _lm(cell)
    idx = torch.randint(0, 13, (2, 40))
    logits, _ = model(idx)
    state, steps = None, []
    for t in range(idx.shape[1]):
        out, state = model.step(idx[:, t], state)
        steps.append(out)
    assert (torch.stack(steps, 1) - logits).abs().max() < 1e-5


def test_lm_state_continues_across_chunks():
    model = _lm()
    idx = torch.randint(0, 13, (2, 30))
    full, _ = model(idx)
    first, state = model(idx[:, :17])
    second, _ = model(idx[:, 17:], state)
    assert (torch.cat([first, second], 1) - full).abs().max() < 1e-5


def test_lm_trains():
    model = _lm().train()
    idx = torch.randint(0, 13, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):  # memorize one batch
        logits, _ = model(idx[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_generate_is_seeded_and_uses_step_mode():
    model = _lm()
    prompt = torch.randint(0, 13, (2, 5))

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return torch.stack(list(generate(model, prompt, 20, temperature=1.0, top_k=5, generator=gen)), 1)

    a, b = run(1), run(1)
    assert a.shape == (2, 20) and torch.equal(a, b)
    # greedy generation in step mode equals greedy decoding by re-running the whole context
    greedy = torch.stack(list(generate(model, prompt, 10, temperature=0.0)), 1)
    ctx = prompt
    for t in range(10):
        nxt = model(ctx)[0][:, -1].argmax(-1)
        assert torch.equal(nxt, greedy[:, t])
        ctx = torch.cat([ctx, nxt[:, None]], 1)


def test_sample_next_top_k_restricts_choices():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    gen = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, 1.0, top_k=2, generator=gen)) for _ in range(50)}
    assert draws <= {2, 3}
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, -1.0)


def test_lm_rejects_bad_ids():
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        _lm()(torch.randn(2, 3))


def test_registry_builds_every_kind_and_refuses_flags_it_does_not_read():
    from minrnn.models import MODEL_KINDS, build_model, check_options, model_config

    settings = dict(vocab_size=11, d_model=8, n_layers=2, dropout=0.0, n_heads=2, expansion=3.0)
    for kind in MODEL_KINDS:
        if kind == "mamba" and not HAS_MAMBAPY:
            continue
        arch, config = model_config(kind, settings, context=16)
        model = build_model(arch, config)
        logits, _ = model(torch.randint(0, 11, (2, 5)))
        assert logits.shape == (2, 5, 11)
    assert model_config("minlstm", settings, 16)[1]["cell"] == "minlstm"
    assert model_config("minlstm", settings, 16)[1]["expansion"] == 3.0
    check_options("mingru", ["expansion", "d_model"])  # fine
    check_options("transformer", ["n_heads", "dropout"])
    with pytest.raises(ValueError, match="--expansion does not apply to --model gru"):
        check_options("gru", ["d_model", "expansion"])
    with pytest.raises(ValueError, match="--n-heads does not apply to --model mingru"):
        check_options("mingru", ["n_heads"])
    check_options("mamba", ["d_state", "expand", "d_conv", "dropout"])
    with pytest.raises(ValueError, match="--expansion does not apply to --model mamba"):
        check_options("mamba", ["expansion"])
    with pytest.raises(ValueError, match="--d-state does not apply to --model mingru"):
        check_options("mingru", ["d_state"])
    with pytest.raises(ValueError, match="unknown model kind 'nope'"):
        check_options("nope", [])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_layers=0), "n_layers must be > 0"),
        (dict(n_layers=-3), "n_layers must be > 0"),
        (dict(vocab_size=0), "vocab_size must be > 0"),
        (dict(conv_kernel=-2), "conv_kernel must be >= 0"),
        (dict(mlp_ratio=-1.0), "mlp_ratio must be >= 0"),
        (dict(expansion=0.0), "expansion must be > 0"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(cell="gru"), "cell must be one of"),
        (dict(norm="batchnorm"), "norm must be one of"),
    ],
)
def test_lm_config_refuses_values_out_of_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LMConfig(**kwargs)


def test_baseline_configs_refuse_values_out_of_range():
    from minrnn.models import RNNConfig, TransformerConfig

    with pytest.raises(ValueError, match="n_layers must be > 0"):
        RNNConfig(n_layers=0)
    with pytest.raises(ValueError, match="multiple of n_heads"):
        TransformerConfig(d_model=10, n_heads=3)
