"""Misuse of the language models' API is a ValueError that says what was expected, for every model
kind of the registry: bad token ids (dtype, shape, T = 0, out of the vocabulary) and states that are
not what `forward` / `step` return (the wrong length, structure, shape or batch size)."""

from __future__ import annotations

import pytest
import torch

from minrnn.models import MODEL_KINDS, build_model, model_config
from tests.helpers import kind_params

V = 11


def make(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    settings = {"vocab_size": V, "d_model": 8, "n_layers": 2, "dropout": 0.0, "n_heads": 2}
    arch, config = model_config(kind, {k: v for k, v in settings.items() if k != "n_heads" or kind == "transformer"}, 16)
    return build_model(arch, config).eval()


KINDS = kind_params(MODEL_KINDS)
BAD_IDS = {
    "float ids": (torch.zeros(2, 5), "int64 (or int32) tensor of shape (B, T)"),
    "1-D ids": (torch.zeros(5, dtype=torch.long), "shape (B, T)"),
    "3-D ids": (torch.zeros(2, 5, 1, dtype=torch.long), "shape (B, T)"),
    "T = 0": (torch.zeros(2, 0, dtype=torch.long), "T = 0 tokens"),
    "negative id": (torch.tensor([[1, -1, 2]]), "outside [0, vocab_size=11): min -1"),
    "id past the vocabulary": (torch.tensor([[1, 11, 2]]), "outside [0, vocab_size=11): min 1, max 11"),
}
BAD_STEP_IDS = {
    "2-D ids": (torch.zeros(2, 1, dtype=torch.long), "shape (B,)"),
    "float ids": (torch.zeros(2), "int64 (or int32) tensor of shape (B,)"),
    "id past the vocabulary": (torch.tensor([3, 11]), "outside [0, vocab_size=11)"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(BAD_IDS))
def test_forward_refuses_bad_ids(kind, case):
    idx, message = BAD_IDS[case]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        make(kind)(idx)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(BAD_STEP_IDS))
def test_step_refuses_bad_ids(kind, case):
    idx, message = BAD_STEP_IDS[case]
    model = make(kind)
    _, state = model(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        model.step(idx, state)


def _bad_states(kind: str, state):
    """Ways to get a state wrong, for each kind: (name, bad state)."""
    other_batch = make(kind)(torch.zeros(3, 4, dtype=torch.long))[1]
    cases = [("state of another batch size", other_batch), ("a string", "state")]
    if kind in ("mingru", "minlstm"):
        (conv0, rnn0), block1 = state
        cases += [
            ("one block's state short", state[:1]),  # ran only the first block before: logits silently off
            ("one block's state too many", [*state, state[0]]),
            ("a block's state not a pair", [rnn0, block1]),
            ("a conv state of the wrong shape", [(conv0[:, :1], rnn0), block1]),
            ("no conv state for a conv block", [(None, rnn0), block1]),
            ("an rnn state of the wrong width", [(conv0, rnn0[..., :-1]), block1]),
        ]
    elif kind == "transformer":
        cases += [("float tokens", state.tokens.float()), ("ids outside the vocabulary", state.tokens + V)]
    elif kind == "gru":
        cases += [("an LSTM pair", (state, state)), ("one layer only", state[:1])]
    elif kind == "lstm":
        cases += [("h alone", state[0]), ("a pair of the wrong shape", (state[0][:1], state[1][:1]))]
    return cases


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_states_are_refused_by_forward_and_step(kind):
    model = make(kind)
    idx = torch.randint(0, V, (2, 4))
    _, state = model(idx)
    model(idx, state)  # the right state works
    model.step(idx[:, 0], state)
    for name, bad in _bad_states(kind, state):
        with pytest.raises(ValueError, match="state|h0"):  # a block's rnn state is its layer's h0
            model(idx, bad)
        with pytest.raises(ValueError, match="state"):
            model.step(idx[:, 0], bad)


def test_minrnn_step_with_a_short_state_names_the_layers():
    model = make("mingru")
    _, state = model(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"state must be a list of 2 per-block states \(one per layer\).*length 1"):
        model.step(torch.zeros(1, dtype=torch.long), state[:1])
