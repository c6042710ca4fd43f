"""Decision Transformer's training windows, drawn from a torch.Generator.

A batch holds ``B`` windows of ``K`` consecutive steps (``context``, 20 in DT and the paper):

- a trajectory is chosen with probability proportional to its length (so every step is equally
  likely to be in a window), then a start ``si`` uniformly in ``[0, length - 1]``; the window is
  steps ``si .. min(si + K, length) - 1``, so windows near the end are shorter than K;
- ``returns_to_go`` (B, K, 1): the undiscounted sum of the rewards from each step to the end of
  its trajectory, divided by ``scale`` (1000 for MuJoCo);
- ``states`` (B, K, S): observations normalised by the dataset's mean and std (std + 1e-6);
- ``actions`` (B, K, A): actions mapped from the action space's ``[low, high]`` to ``[-1, 1]``
  (the identity for MuJoCo, whose bounds are -1 and 1), which the model's tanh head can reach;
- ``timesteps`` (B, K): each step's index in its trajectory, capped at ``max_ep_len - 1``;
- ``mask`` (B, K): 1 at real steps, 0 at padding.

Short windows are padded on the left as DT did: returns-to-go 0, actions -10, timesteps 0, mask 0;
states 0 after normalisation (DT pads before normalising, which puts them at -mean/std; only a
backbone that sees padding as input, not masked, can tell, and training and evaluation pad alike
here: `pad_left`).

All randomness comes from the generator passed to `WindowSampler.sample`, so a batch is a function
of the generator's seed: the trainer seeds it by (seed, step, micro-batch), which makes resume
exact and DDP sharding correct.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from minrnn.rl.data import Trajectories

PAD_ACTION = -10.0  # DT's action padding


@dataclass
class Normalizer:
    """The per-dataset transforms a policy is trained with and evaluated under (saved in the run)."""

    state_mean: np.ndarray  # (S,)
    state_std: np.ndarray  # (S,), std + 1e-6
    action_low: np.ndarray  # (A,)
    action_high: np.ndarray  # (A,)
    scale: float  # returns-to-go are divided by it

    @classmethod
    def fit(cls, data: Trajectories, scale: float, action_low=None, action_high=None) -> "Normalizer":
        """State mean and std over every step of ``data`` (as DT); action bounds default to [-1, 1]."""
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        obs = data.observations.astype(np.float64)
        low = np.full(data.act_dim, -1.0) if action_low is None else np.broadcast_to(np.asarray(action_low, np.float64), (data.act_dim,))
        high = np.full(data.act_dim, 1.0) if action_high is None else np.broadcast_to(np.asarray(action_high, np.float64), (data.act_dim,))
        if not np.all(np.isfinite(low) & np.isfinite(high) & (high > low)):
            raise ValueError(f"action bounds must be finite with high > low, got low={low}, high={high}")
        return cls(obs.mean(0), obs.std(0) + 1e-6, low.copy(), high.copy(), float(scale))

    def states(self, obs) -> Tensor:
        """Raw observations (..., S) -> normalised float32 states."""
        obs = torch.as_tensor(obs, dtype=torch.float64)
        return ((obs - torch.from_numpy(self.state_mean)) / torch.from_numpy(self.state_std)).float()

    def actions(self, act) -> Tensor:
        """Environment actions (..., A) -> [-1, 1] (clipped to the bounds first)."""
        act = torch.as_tensor(act, dtype=torch.float64)
        low, high = torch.from_numpy(self.action_low), torch.from_numpy(self.action_high)
        return (2.0 * (torch.minimum(torch.maximum(act, low), high) - low) / (high - low) - 1.0).float()

    def env_actions(self, act: Tensor) -> np.ndarray:
        """Model actions in [-1, 1] (..., A) -> environment actions (float64 numpy)."""
        a = act.detach().to("cpu", torch.float64).numpy()
        return self.action_low + (a + 1.0) * 0.5 * (self.action_high - self.action_low)

    def to_dict(self) -> dict:
        """JSON / checkpoint form (lists of floats)."""
        return {
            "state_mean": self.state_mean.tolist(),
            "state_std": self.state_std.tolist(),
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in ("state_mean", "state_std", "action_low", "action_high")), float(d["scale"]))


def returns_to_go(data: Trajectories) -> np.ndarray:
    """(N,) float64: for every row, the sum of its trajectory's rewards from that row to the end."""
    r = data.rewards
    total = np.cumsum(r[::-1])[::-1]  # suffix sums over the whole file
    ends = data.starts + data.lengths  # first row after each trajectory
    after = np.append(total, 0.0)[ends]  # what lies beyond each trajectory's end
    return total - np.repeat(after, data.lengths)


def pad_left(window: dict[str, Tensor], context: int) -> dict[str, Tensor]:
    """Left-pad windows of T <= context steps to ``context`` steps as DT (see module docstring);
    adds ``mask``. Keys: returns_to_go (B, T, 1), states (B, T, S), actions (B, T, A), timesteps (B, T)."""
    T = window["states"].shape[1]
    if T > context:
        raise ValueError(f"window has {T} steps, more than context={context}")
    n = context - T
    pads = {"returns_to_go": 0.0, "states": 0.0, "actions": PAD_ACTION, "timesteps": 0}
    out = {}
    for key, value in pads.items():
        x = window[key]
        out[key] = torch.cat([x.new_full((x.shape[0], n, *x.shape[2:]), value), x], dim=1)
    B = window["states"].shape[0]
    out["mask"] = torch.cat([torch.zeros(B, n), torch.ones(B, T)], dim=1)
    return out


class WindowSampler:
    """Draws DT's training windows from ``data`` (see module docstring)."""

    def __init__(self, data: Trajectories, normalizer: Normalizer, context: int = 20, max_ep_len: int = 1000) -> None:
        if context < 1 or max_ep_len < 1:
            raise ValueError(f"context and max_ep_len must be >= 1, got {context}, {max_ep_len}")
        self.data = data
        self.context = context
        self.max_ep_len = max_ep_len
        self.normalizer = normalizer
        self.p = torch.from_numpy(data.lengths / data.lengths.sum())  # float64 trajectory weights
        self.starts = torch.from_numpy(data.starts)
        self.lengths = torch.from_numpy(data.lengths)
        # Everything a window reads, transformed once: states normalised, actions in [-1, 1].
        self.states = normalizer.states(data.observations)
        self.actions = normalizer.actions(data.actions)
        self.rtg = torch.from_numpy(returns_to_go(data) / normalizer.scale).float()

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """A batch of ``batch_size`` windows: dict of returns_to_go (B, K, 1), states (B, K, S),
        actions (B, K, A), timesteps (B, K) int64, mask (B, K) float32."""
        return self.windows(*self.draw(batch_size, generator))

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(trajectory (B,), start step (B,)): trajectories in proportion to their length, starts
        uniform in [0, length - 1]."""
        traj = torch.multinomial(self.p, batch_size, replacement=True, generator=generator)
        start = (torch.rand(batch_size, generator=generator, dtype=torch.float64) * self.lengths[traj]).long()
        return traj, start

    def windows(self, traj: Tensor, start: Tensor) -> dict[str, Tensor]:
        """The windows of K steps from ``start`` in trajectories ``traj`` (both (B,) int64),
        left-padded where fewer than K steps remain."""
        K = self.context
        n = torch.clamp(self.lengths[traj] - start, max=K)  # real steps in each window
        # Real steps sit at the right end: slot j holds step start + j - (K - n).
        offset = torch.arange(K) - (K - n)[:, None]  # (B, K); < 0 at padding
        mask = offset >= 0
        t = start[:, None] + offset.clamp(min=0)  # step within the trajectory
        rows = self.starts[traj][:, None] + t  # row in the flat arrays
        states = torch.where(mask[..., None], self.states[rows], 0.0)
        actions = torch.where(mask[..., None], self.actions[rows], PAD_ACTION)
        rtg = torch.where(mask, self.rtg[rows], 0.0)[..., None]
        timesteps = torch.where(mask, t.clamp(max=self.max_ep_len - 1), 0)
        return {"returns_to_go": rtg, "states": states, "actions": actions, "timesteps": timesteps, "mask": mask.float()}
