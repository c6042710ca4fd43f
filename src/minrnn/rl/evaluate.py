"""Evaluation of a return-conditioned policy in gymnasium: many episodes in lock-step as one batch.

Each episode starts from ``env.reset(seed=seed + i)`` with the return-to-go set to a target return
(divided by the run's scale); after every step the reward is subtracted (``rtg -= reward / scale``)
and the policy picks the next action from the history so far. All episodes of a target advance
together: one model call per environment step for the whole batch; an episode that has ended is
left alone while the others go on. Episodes last at most ``max_ep_len`` steps (and the
environment's own time limit).

Two modes:

- ``"window"`` (DT and the paper): the last K steps are re-encoded at every step, left-padded as
  in training (`minrnn.rl.sampler.pad_left`); the model needs only ``forward``.
- ``"recurrent"``: the model carries its state through the whole episode and reads each new token
  once (O(1) per step for minGRU / minLSTM); it needs ``init_state``, ``step_state`` and
  ``step_action``. It sees the whole history, not the last K steps it was trained on.

Any object with these methods (`DecisionPolicy`) can be evaluated, so the loop is tested with
simple policies of known behaviour.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from minrnn.rl.envs import make_env
from minrnn.rl.sampler import Normalizer, pad_left
from minrnn.rl.scores import normalized_score

MODES = ("window", "recurrent")


class DecisionPolicy(Protocol):
    """What evaluation calls (shapes: B episodes, K steps, S state dims, A action dims)."""

    def forward(self, returns_to_go: Tensor, states: Tensor, actions: Tensor, timesteps: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, K, 1), (B, K, S), (B, K, A), (B, K) int64, (B, K) -> actions in [-1, 1] (B, K, A),
        predicted at each step's state token."""
        ...

    def init_state(self, batch_size: int) -> Any: ...

    def step_state(self, returns_to_go: Tensor, states: Tensor, timesteps: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Read the return and state tokens of one step: (B, 1), (B, S), (B,) -> (action (B, A), state)."""
        ...

    def step_action(self, actions: Tensor, timesteps: Tensor, state: Any) -> Any:
        """Read the action token of the step just taken: (B, A), (B,) -> state."""
        ...


@dataclass
class EvalConfig:
    """One evaluation: ``episodes`` per target return, in ``mode``."""

    env_id: str
    targets: Sequence[float]
    episodes: int = 10
    mode: str = "window"
    context: int = 20  # K of window mode
    max_ep_len: int = 1000
    seed: int = 0  # episode i of every target starts from env.reset(seed=seed + i)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.episodes < 1 or self.context < 1 or self.max_ep_len < 1:
            raise ValueError(f"episodes, context and max_ep_len must be >= 1, got {self.episodes}, {self.context}, {self.max_ep_len}")
        if not self.targets:
            raise ValueError("at least one target return is needed")


@torch.no_grad()
def run_episodes(
    policy: DecisionPolicy,
    envs: Sequence,
    seeds: Sequence[int],
    target: float,
    normalizer: Normalizer,
    mode: str = "window",
    context: int = 20,
    max_ep_len: int = 1000,
    device: torch.device | str = "cpu",
    bar: tqdm | None = None,
) -> tuple[list[float], list[int]]:
    """Run one episode in each of ``envs`` (reset with ``seeds``) in lock-step, conditioned on
    ``target``; returns (episode returns, episode lengths)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    B = len(envs)
    obs = np.stack([np.asarray(env.reset(seed=int(s))[0], dtype=np.float64) for env, s in zip(envs, seeds)])
    S, A = obs.shape[1], len(normalizer.action_low)
    # Histories of what the policy has seen, one row per episode (window mode reads the last K).
    rtg = torch.zeros(B, max_ep_len, 1)
    states = torch.zeros(B, max_ep_len, S)
    actions = torch.zeros(B, max_ep_len, A)
    timesteps = torch.arange(max_ep_len).expand(B, max_ep_len)
    rtg[:, 0, 0] = target / normalizer.scale
    states[:, 0] = normalizer.states(obs)
    returns, lengths = np.zeros(B), np.zeros(B, dtype=np.int64)
    active = np.ones(B, dtype=bool)
    memory = policy.init_state(B) if mode == "recurrent" else None
    for t in range(max_ep_len):
        if mode == "window":
            lo = max(0, t + 1 - context)
            window = {"returns_to_go": rtg[:, lo : t + 1], "states": states[:, lo : t + 1], "actions": actions[:, lo : t + 1], "timesteps": timesteps[:, lo : t + 1]}
            window = {k: v.to(device) for k, v in pad_left(window, context).items()}
            action = policy(window["returns_to_go"], window["states"], window["actions"], window["timesteps"], window["mask"])[:, -1]
        else:
            if t > 0:
                memory = policy.step_action(actions[:, t - 1].to(device), timesteps[:, t - 1].to(device), memory)
            action, memory = policy.step_state(rtg[:, t].to(device), states[:, t].to(device), timesteps[:, t].to(device), memory)
        action = action.float().cpu()
        actions[:, t] = action
        env_actions = normalizer.env_actions(action)
        for i in np.flatnonzero(active):
            ob, reward, terminated, truncated, _ = envs[i].step(env_actions[i].astype(envs[i].action_space.dtype))
            returns[i] += float(reward)
            lengths[i] += 1
            if terminated or truncated or t + 1 == max_ep_len:
                active[i] = False
            else:
                states[i, t + 1] = normalizer.states(np.asarray(ob, dtype=np.float64))
                rtg[i, t + 1, 0] = rtg[i, t, 0] - float(reward) / normalizer.scale
        if bar is not None:
            bar.update(1)
            bar.set_postfix(active=int(active.sum()))
        if not active.any():
            break
    return returns.tolist(), lengths.tolist()


def summarize(returns: Sequence[float], lengths: Sequence[int], env_id: str, refs: tuple[float, float] | None) -> dict:
    """Mean and std (over episodes, population std as DT) of returns, lengths and, where reference
    returns are known, normalised scores."""
    out: dict[str, Any] = {
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "length_mean": float(np.mean(lengths)),
        "returns": [float(r) for r in returns],
        "lengths": [int(n) for n in lengths],
    }
    if refs is not None:
        scores = normalized_score(env_id, np.asarray(returns), refs)
        out.update(normalized_mean=float(scores.mean()), normalized_std=float(scores.std()), normalized=scores.tolist())
    return out


def evaluate(
    policy: DecisionPolicy,
    normalizer: Normalizer,
    cfg: EvalConfig,
    *,
    refs: tuple[float, float] | None = None,
    make: Callable[[str], Any] = make_env,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict:
    """Evaluate ``policy`` for every target of ``cfg``: ``cfg.episodes`` episodes in lock-step
    each. ``refs`` = (random, expert) returns for the normalised score (None: no score). Returns a
    JSON-able dict: the config, refs, and per target its returns, lengths and scores."""
    envs = [make(cfg.env_id) for _ in range(cfg.episodes)]
    was_training = getattr(policy, "training", False)
    if hasattr(policy, "eval"):
        policy.eval()
    results = []
    try:
        for target in cfg.targets:
            bar = tqdm(total=cfg.max_ep_len, desc=f"eval target {target:g}", unit="step", mininterval=2.0, dynamic_ncols=True, disable=not progress)
            seeds = [cfg.seed + i for i in range(cfg.episodes)]
            returns, lengths = run_episodes(policy, envs, seeds, float(target), normalizer, cfg.mode, cfg.context, cfg.max_ep_len, device, bar)
            bar.close()
            results.append({"target": float(target), **summarize(returns, lengths, cfg.env_id, refs)})
    finally:
        for env in envs:
            env.close()
        if was_training and hasattr(policy, "train"):
            policy.train()
    return {**asdict(cfg), "targets": [float(t) for t in cfg.targets], "refs": list(refs) if refs else None, "results": results}


def save_json(result: dict, path: str | Path) -> Path:
    """Write an evaluation result as JSON (atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path
