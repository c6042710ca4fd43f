"""The decision model of offline RL: causal, step mode equals parallel mode, masked loss, registry."""

import pytest
import torch

from minrnn.models import build_model
from minrnn.models.decision import DecisionConfig, DecisionModel, action_loss
from minrnn.models.registry import check_options, model_config

KINDS = ["mingru", "minlstm", "transformer", "gru", "lstm"]
RECURRENT = ["mingru", "minlstm", "gru", "lstm"]


def make(kind, state_dim=3, act_dim=2, **kw):
    settings = {"state_dim": state_dim, "act_dim": act_dim, "d_model": 16, "n_layers": 2, "dropout": 0.1, "max_ep_len": 50, **kw}
    arch, cfg = model_config(kind, settings, context=7, family="decision")
    return build_model(arch, cfg).double().eval()


def window(B=3, K=7, S=3, A=2, t0=0):
    return {
        "returns_to_go": torch.randn(B, K, 1, dtype=torch.float64),
        "states": torch.randn(B, K, S, dtype=torch.float64),
        "actions": torch.rand(B, K, A, dtype=torch.float64) * 2 - 1,
        "timesteps": torch.arange(t0, t0 + K).expand(B, K).clone(),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_causal(kind):
    """a_t's prediction depends on R_<=t, s_<=t and a_<t only."""
    model, w = make(kind), window()
    out = model(**w)
    assert out.shape == (3, 7, 2) and out.abs().max() <= 1  # tanh head
    t = 3
    changed = {k: v.clone() for k, v in w.items()}
    changed["actions"][:, t:] += 1.0  # a_t and later
    changed["states"][:, t + 1 :] += 1.0
    changed["returns_to_go"][:, t + 1 :] -= 1.0
    after = model(**changed)
    torch.testing.assert_close(after[:, : t + 1], out[:, : t + 1])
    assert not torch.allclose(after[:, t + 1 :], out[:, t + 1 :])
    # and it does read the earlier action
    earlier = {k: v.clone() for k, v in w.items()}
    earlier["actions"][:, t - 1] += 1.0
    assert not torch.allclose(model(**earlier)[:, t], out[:, t])


@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("K", [1, 7])
def test_step_equals_parallel(kind, K):
    model, w = make(kind), window(K=K, t0=5)
    parallel = model(**w)
    state = model.init_state(3)
    steps = []
    for t in range(K):
        if t > 0:
            state = model.step_action(w["actions"][:, t - 1], w["timesteps"][:, t - 1], state)
        action, state = model.step_state(w["returns_to_go"][:, t], w["states"][:, t], w["timesteps"][:, t], state)
        steps.append(action)
    torch.testing.assert_close(torch.stack(steps, dim=1), parallel, rtol=1e-10, atol=1e-10)


def test_transformer_has_no_step_mode_and_ignores_padded_keys():
    model, w = make("transformer"), window()
    assert not model.recurrent and make("mingru").recurrent
    with pytest.raises(ValueError, match="no step mode"):
        model.init_state(3)
    mask = torch.ones(3, 7, dtype=torch.float64)
    mask[:, :2] = 0
    out = model(**w, mask=mask)
    padded = {k: v.clone() for k, v in w.items()}
    padded["states"][:, :2] = 99.0
    padded["actions"][:, :2] = -10.0
    torch.testing.assert_close(model(**padded, mask=mask)[:, 2:], out[:, 2:])
    # without the mask, padding is input like the rest (as for the recurrent backbones)
    assert not torch.allclose(model(**padded)[:, 2:], model(**w)[:, 2:])


def test_action_loss_counts_real_steps_only():
    model = make("mingru").float()
    w = {k: (v.float() if v.is_floating_point() else v) for k, v in window().items()}
    w["mask"] = torch.ones(3, 7)
    w["mask"][0, :4] = 0
    pred = model(**{k: w[k] for k in ("returns_to_go", "states", "actions", "timesteps")}, mask=w["mask"])
    target = torch.zeros_like(w["actions"])
    expected = (pred[w["mask"] > 0] ** 2).mean()
    torch.testing.assert_close(action_loss(model, w, target), expected)


def test_config_checks_and_registry():
    with pytest.raises(ValueError, match="state_dim"):
        DecisionConfig(state_dim=0)
    with pytest.raises(ValueError, match="multiple of n_heads"):
        DecisionConfig(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="state_dim and act_dim"):
        model_config("mingru", {"d_model": 16}, 20, family="decision")
    arch, cfg = model_config("transformer", {"state_dim": 3, "act_dim": 1, "d_model": 16, "n_layers": 2, "dropout": 0.0, "n_heads": 2, "expansion": 9.0}, 20, family="decision")
    assert arch == "decision" and cfg["backbone"] == "transformer" and cfg["n_heads"] == 2 and cfg["context"] == 20
    assert cfg["expansion"] == DecisionConfig.expansion  # not the transformer's option: ignored here ...
    with pytest.raises(ValueError, match="--expansion does not apply to --model transformer"):
        check_options("transformer", ["expansion"], family="decision")  # ... and refused as a flag
    with pytest.raises(ValueError, match="--conv-kernel does not apply to --model mingru"):
        check_options("mingru", ["conv_kernel"], family="decision")
    check_options("mingru", ["expansion", "mlp_ratio", "d_model"], family="decision")
    with pytest.raises(ValueError, match="shape"):
        make("gru")(**{**window(), "states": torch.zeros(3, 7, 4, dtype=torch.float64)})
    assert isinstance(make("lstm"), DecisionModel)
