"""The fused CPU step (`MinRNNLM.step` / `MinRNNBlock.fused_step` on `minrnn.ops.step_cpu`
kernels, and the layers' `step` through `minrnn.functional`) equals the op-by-op reference step
and the parallel forward: logits and states, both cells, every block variant, with and without a
state read in parallel first, in float64, float32 and bfloat16 (weights; state float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minrnn.layers import MinGRU, MinLSTM
from minrnn.models import LMConfig, MinRNNLM
from minrnn.ops import step_cpu

V = 13
VARIANTS = {
    "paper": {},
    "bare": {"conv_kernel": 0, "mlp_ratio": 0.0, "expansion": 1.0},  # no conv, MLP, down-projection
    "rms-identity-k2": {"norm": "rmsnorm", "activation": "identity", "conv_kernel": 2},
    "k1": {"conv_kernel": 1, "mlp_ratio": 1.5},
}


def make(cell: str, variant: str = "paper", dtype: torch.dtype = torch.float64) -> MinRNNLM:
    torch.manual_seed(0)
    options = {"expansion": 1.5, **VARIANTS[variant]}
    model = MinRNNLM(LMConfig(vocab_size=V, d_model=12, n_layers=2, cell=cell, dropout=0.1, **options))
    return model.to(dtype).eval()


def run_steps(model, idx, state, fused: bool):
    outs = []
    for t in range(idx.shape[1]):
        if state is None:
            state = model.init_state(idx.shape[0])
        out, state = model.step(idx[:, t], state) if fused else model.reference_step(idx[:, t], state)
        outs.append(out)
    return torch.stack(outs, 1), state


def assert_states_close(a, b, **tol):
    assert len(a) == len(b)
    for (ca, ra), (cb, rb) in zip(a, b):
        assert (ca is None) == (cb is None)
        if ca is not None:
            torch.testing.assert_close(ca.to(cb.dtype), cb, **tol)
        torch.testing.assert_close(ra.to(rb.dtype), rb, **tol)


# Every variant in float64 and float32 with and without a prefilled state; the default run keeps
# the paper's block in both dtypes and the other variants in one combination each (slow: the rest).
CASES = [
    pytest.param(variant, prefill, dtype, marks=() if variant == "paper" or (prefill, dtype) == (5, torch.float64) else pytest.mark.slow)
    for variant in VARIANTS
    for prefill in (0, 5)
    for dtype in (torch.float64, torch.float32)
]


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("variant,prefill,dtype", CASES)
def test_fused_step_equals_reference_step_and_forward(cell, variant, prefill, dtype):
    model = make(cell, variant, dtype)
    B, T = 3, 11
    idx = torch.randint(0, V, (B, T))
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    with torch.no_grad():
        full, full_state = model(idx)
        start, state = model(idx[:, :prefill]) if prefill else (None, None)
        fused, fused_state = run_steps(model, idx[:, prefill:], state, fused=True)
        ref, ref_state = run_steps(model, idx[:, prefill:], state, fused=False)
    assert fused_state[0][1].dtype == dtype  # the fused path ran: its state tensors carry their arrays
    assert hasattr(fused_state[0][1], "_minrnn_array")
    torch.testing.assert_close(fused, ref, **tol)
    torch.testing.assert_close(fused, full[:, prefill:], **tol)
    assert_states_close(fused_state, ref_state, **tol)
    assert_states_close(fused_state, full_state, **tol)


def test_one_token_from_nothing():
    model = make("mingru", dtype=torch.float32)
    idx = torch.randint(0, V, (1, 1))
    with torch.no_grad():
        full, _ = model(idx)
        out, state = model.step(idx[:, 0])  # state None: init_state
    torch.testing.assert_close(out, full[:, 0], rtol=1e-5, atol=1e-5)


# bfloat16 weights: bf16 matmuls, float32 state, residual stream and elementwise math. Compared
# with the float32 model whose weights are the same bf16 values, the only difference is the
# rounding of the matmuls' inputs to bf16 (8 bits of mantissa, ~0.4% each): logits within 0.05
# absolute (they are O(1)) and states within 0.02, over 12 steps of a 2-layer model.
BF16_TOL = {"rtol": 0.0, "atol": 5e-2}
BF16_STATE_TOL = {"rtol": 0.0, "atol": 2e-2}


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("prefill", [0, 4])
def test_bf16_step_keeps_float32_state_and_tracks_float32(cell, prefill):
    bf16 = make(cell, "paper", torch.bfloat16)
    ref = make(cell, "paper", torch.bfloat16).float()  # the same (rounded) weights in float32
    B, T = 4, 12
    idx = torch.randint(0, V, (B, T))
    with torch.no_grad():
        _, state = bf16(idx[:, :prefill]) if prefill else (None, None)
        out, fused_state = run_steps(bf16, idx[:, prefill:], state, fused=True)
        full, full_state = ref(idx)
        bf16_full, _ = bf16(idx)  # the parallel forward of the bf16 model itself
    assert out.dtype == torch.bfloat16
    assert all(s.dtype == torch.float32 for block in fused_state for s in block if s is not None)
    torch.testing.assert_close(out.float(), full[:, prefill:], **BF16_TOL)
    assert_states_close(fused_state, full_state, **BF16_STATE_TOL)
    # no worse than bf16 end to end (which also rounds states and residuals to bf16)
    err_fused = (out.float() - full[:, prefill:]).abs().max()
    err_bf16 = (bf16_full[:, prefill:].float() - full[:, prefill:]).abs().max()
    assert err_fused <= err_bf16 + 1e-3


def test_fused_step_follows_weight_changes():
    model = make("minlstm", dtype=torch.float32)
    other = make("minlstm", dtype=torch.float32)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn_like(p))
    idx = torch.randint(0, V, (2, 6))
    with torch.no_grad():
        run_steps(model, idx, None, fused=True)  # packs the weights
        model.load_state_dict(other.state_dict())  # in place
        a, _ = run_steps(model, idx, None, fused=True)
        model.blocks[0].mlp[0].weight.mul_(0.5)  # an in-place update, as an optimizer's
        other.blocks[0].mlp[0].weight.mul_(0.5)
        b, _ = run_steps(model, idx, None, fused=True)
        model.double()  # new storages: the cache is rebuilt
        c, _ = run_steps(model, idx, None, fused=True)
        expected, _ = other(idx)
    torch.testing.assert_close(b, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c.float(), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a, b)


def test_grad_and_dropout_take_the_reference_path():
    model = make("mingru", dtype=torch.float32)
    idx = torch.randint(0, V, (2,))
    out, state = model.step(idx)  # grad enabled, weights require grad: autograd works
    out.sum().backward()
    assert model.blocks[0].rnn.proj[0].weight.grad is not None
    assert not hasattr(state[0][1], "_minrnn_array")
    model.train()  # dropout 0.1
    with torch.no_grad():
        _, state = model.step(idx)
    assert not hasattr(state[0][1], "_minrnn_array")


def test_fused_step_refuses_bad_ids_and_states():
    model = make("mingru", dtype=torch.float32)
    with torch.no_grad():
        _, state = model(torch.zeros(2, 3, dtype=torch.long))
        with pytest.raises(ValueError, match=r"outside \[0, vocab_size=13\): min 3, max 13"):
            model.step(torch.tensor([3, 13]), state)
        (conv, rnn), block1 = state
        for bad in ([(conv[:, :1], rnn), block1], [(None, rnn), block1], [(conv, rnn[..., :-1]), block1], [rnn, block1]):
            with pytest.raises(ValueError, match="state"):
                model.step(torch.tensor([1, 2]), bad)
        with pytest.raises(ValueError, match="state"):
            model.step(torch.tensor([1, 2, 3]), state)  # another batch size


@pytest.mark.parametrize("layer_cls", [MinGRU, MinLSTM])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_h0", [False, True])
def test_layer_step_equals_forward(layer_cls, dtype, with_h0):
    torch.manual_seed(0)
    layer = layer_cls(5, 7, num_layers=2, batch_first=True, dtype=dtype)
    x = torch.randn(3, 9, 5, dtype=dtype)
    h0 = torch.randn(2, 3, 7, dtype=dtype) if with_h0 else None
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    with torch.no_grad():
        full, h_n = layer(x, h0)
        state, outs = h0, []
        for t in range(x.shape[1]):
            out, state = layer.step(x[:, t], state)
            outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), full, **tol)
    torch.testing.assert_close(state[0] if isinstance(state, tuple) else state, h_n[0] if isinstance(h_n, tuple) else h_n, **tol)


def test_layer_step_keeps_gradients():
    torch.manual_seed(0)
    layer = MinGRU(4, 6)
    x = torch.randn(2, 4, requires_grad=True)
    out, _ = layer.step(x)
    out.sum().backward()
    assert x.grad is not None and layer.proj[0].weight.grad is not None


def test_gelu_and_bf16_rounding_kernels():
    x = torch.linspace(-9, 9, 20001).reshape(1, -1)
    out = np.empty_like(x.numpy())
    step_cpu.gelu(x.numpy(), out)
    exact = torch.nn.functional.gelu(x.double())
    # within float32 rounding of x * (1 + erf): |error| <= ~2 eps |x| (torch's own: 1 eps |x|)
    err = (torch.from_numpy(out).double() - exact).abs()
    assert bool((err <= 2.4e-7 * x.double().abs() + 1e-12).all()), float((err / x.double().abs().clamp(min=1e-3)).max())
    # bf16 outputs round to nearest even, as torch's conversion
    v = torch.randn(1, 4096) * 50
    v[0, :4] = torch.tensor([float("inf"), -float("inf"), 0.0, -0.0])
    hm = np.empty((1, 4096), np.uint16)
    pre = torch.cat([torch.full((1, 4096), 100.0), v], 1).numpy()  # gate -> z = 1: h' = cand (identity)
    h_out = np.empty((1, 4096), np.float32)
    step_cpu.cell(((pre.reshape(-1), 8192, 0), (pre.reshape(-1), 8192, 4096)), np.zeros((1, 4096), np.float32), h_out, hm, True)
    assert torch.equal(step_cpu.from_array(hm, torch.bfloat16), torch.from_numpy(h_out).bfloat16())
