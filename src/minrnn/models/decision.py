"""The decision model of offline RL: Decision Transformer's tokens over a choice of backbone.

Each timestep t of a trajectory becomes three tokens, return-to-go R_t, state s_t and action a_t,
in that order (R_1, s_1, a_1, R_2, s_2, a_2, ...). Each is embedded by its own Linear, plus a
learned embedding of t (at most ``max_ep_len`` steps, initialised N(0, 0.02) where DT left
PyTorch's N(0, 1)) shared by the three, then LayerNorm (and dropout). A causal backbone (`minrnn.models.backbones`, chosen by name through
`minrnn.models.registry.build_backbone`) reads the tokens, and the action a_t is predicted from
the output at s_t's token by Linear + tanh, so it depends on R_<=t, s_<=t and a_<t only.
Training minimises the squared error of the predicted actions at the real (unpadded) steps.

Recurrent backbones (minGRU, minLSTM, GRU, LSTM) also run token by token with O(1) state:
`step_state` reads R_t and s_t and returns a_t's prediction, `step_action` reads the action taken.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from minrnn.models.checks import check_ranges
from minrnn.models.hub import PretrainedMixin


@dataclass
class DecisionConfig:
    """The decision model; ``backbone`` is a model kind (mingru, minlstm, transformer, gru, lstm)."""

    state_dim: int = 17
    act_dim: int = 6
    backbone: str = "mingru"
    d_model: int = 128
    n_layers: int = 3
    dropout: float = 0.1
    max_ep_len: int = 1000  # size of the timestep embedding
    context: int = 20  # K: timesteps per training window (3K tokens)
    expansion: float = 2.0  # minRNN width / d_model (minGRU, minLSTM)
    mlp_ratio: float = 4.0  # MLP width / d_model (minGRU, minLSTM; the Transformer's is 4)
    n_heads: int = 1  # attention heads (Transformer; DT uses 1)

    def __post_init__(self) -> None:
        check_ranges(self, positive=("state_dim", "act_dim", "d_model", "n_layers", "max_ep_len", "context", "expansion", "n_heads"), nonnegative=("mlp_ratio",))
        if self.d_model % self.n_heads:
            raise ValueError(f"DecisionConfig.d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")

    def to_dict(self) -> dict:
        return asdict(self)


def action_loss(model: nn.Module, window: dict[str, Tensor], target: Tensor) -> Tensor:
    """Mean squared error of the predicted actions at the real steps of ``window`` (its ``mask``):
    the Trainer's loss. ``target`` (B, K, A) are the window's actions."""
    pred = model(window["returns_to_go"], window["states"], window["actions"], window["timesteps"], window["mask"])
    mask = window["mask"].unsqueeze(-1)
    return ((pred.float() - target) ** 2 * mask).sum() / (mask.sum() * target.shape[-1])


class DecisionModel(PretrainedMixin, nn.Module):
    """Return-conditioned policy over windows of (return-to-go, state, action, timestep)."""

    def __init__(self, config: DecisionConfig) -> None:
        super().__init__()
        from minrnn.models.registry import build_backbone  # the registry also builds this model

        self.config = config
        D = config.d_model
        self.embed_timestep = nn.Embedding(config.max_ep_len, D)
        # N(0, 0.02) as GPT-2's embeddings, not nn.Embedding's N(0, 1) that DT's timestep embedding
        # kept: N(0, 1) drowns the state in noise at first (on the local Pendulum benchmark a
        # 1000-step minGRU scored 6 instead of 48: results/rl/README.md).
        nn.init.normal_(self.embed_timestep.weight, 0.0, 0.02)
        self.embed_return = nn.Linear(1, D)
        self.embed_state = nn.Linear(config.state_dim, D)
        self.embed_action = nn.Linear(config.act_dim, D)
        self.embed_ln = nn.LayerNorm(D)
        self.drop = nn.Dropout(config.dropout)
        self.backbone = build_backbone(config.backbone, config.to_dict())
        self.predict_action = nn.Sequential(nn.Linear(D, config.act_dim), nn.Tanh())

    @property
    def recurrent(self) -> bool:
        """Whether `step_state` / `step_action` can run (a backbone with a step mode)."""
        return hasattr(self.backbone, "step")

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check(self, returns_to_go: Tensor, states: Tensor, actions: Tensor, timesteps: Tensor) -> None:
        B, K = states.shape[:2]
        shapes = {
            "returns_to_go": (returns_to_go, (B, K, 1)),
            "states": (states, (B, K, self.config.state_dim)),
            "actions": (actions, (B, K, self.config.act_dim)),
            "timesteps": (timesteps, (B, K)),
        }
        for name, (t, shape) in shapes.items():
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")

    def tokens(self, returns_to_go: Tensor, states: Tensor, actions: Tensor, timesteps: Tensor) -> Tensor:
        """(B, K, 1), (B, K, S), (B, K, A), (B, K) -> interleaved embeddings (B, 3K, D)."""
        B, K = states.shape[:2]
        t = self.embed_timestep(timesteps)
        x = torch.stack((self.embed_return(returns_to_go) + t, self.embed_state(states) + t, self.embed_action(actions) + t), dim=2)
        return self.drop(self.embed_ln(x.reshape(B, 3 * K, -1)))

    def forward(self, returns_to_go: Tensor, states: Tensor, actions: Tensor, timesteps: Tensor, mask: Tensor | None = None) -> Tensor:
        """returns_to_go (B, K, 1), states (B, K, S), actions (B, K, A), timesteps (B, K) int64,
        mask (B, K) (1 at real steps; the Transformer ignores padded keys) -> predicted actions in
        [-1, 1] (B, K, A), a_t read at s_t's token."""
        self._check(returns_to_go, states, actions, timesteps)
        token_mask = None if mask is None else mask.repeat_interleave(3, dim=1)
        h = self.backbone(self.tokens(returns_to_go, states, actions, timesteps), token_mask)
        return self.predict_action(h[:, 1::3])

    # --- step mode ------------------------------------------------------------------------------

    def init_state(self, batch_size: int) -> Any:
        if not self.recurrent:
            raise ValueError(f"the {self.config.backbone} backbone has no step mode; evaluate it in window mode")
        return self.backbone.init_state(batch_size)

    def _read(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.backbone.step(self.drop(self.embed_ln(x)), state)

    def step_state(self, returns_to_go: Tensor, states: Tensor, timesteps: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Read R_t and s_t: (B, 1), (B, S), (B,) -> (predicted a_t (B, A), state)."""
        t = self.embed_timestep(timesteps)
        _, state = self._read(self.embed_return(returns_to_go) + t, state)
        h, state = self._read(self.embed_state(states) + t, state)
        return self.predict_action(h), state

    def step_action(self, actions: Tensor, timesteps: Tensor, state: Any) -> Any:
        """Read the action a_t taken at step t: (B, A), (B,) -> state."""
        _, state = self._read(self.embed_action(actions) + self.embed_timestep(timesteps), state)
        return state
