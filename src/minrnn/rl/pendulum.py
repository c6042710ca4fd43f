"""Reproducible offline datasets for Pendulum-v1, written in D4RL's HDF5 layout.

The D4RL MuJoCo files cannot be fetched here, so the local benchmark uses datasets of the same
kinds made on a task a CPU simulates in microseconds: Pendulum-v1 (3 observations, 1 torque in
[-2, 2], 200 steps per episode, reward -(angle^2 + 0.1 speed^2 + 0.001 torque^2), never
terminates). The behaviour policies are a scripted controller and noise, not trained agents:

- ``expert``: energy-pumping swing-up, then a PD controller near the top (mean return about -144,
  near the best known for this task), with Gaussian action noise (std 0.1);
- ``medium``: the same controller with a 250 times weaker swing-up gain (0.006 instead of 1.5)
  and Gaussian noise (std 0.2): it balances as well as the expert once up, but pumps energy so
  slowly that it often gets there late or not at all (mean return about -650, a normalised score
  near 50; D4RL's "medium" policies score about a third to half of the expert). Two weaker
  policies tried first made poor data (results/rl/README.md): one replacing 60% of its actions
  by random torques (imitation averages them to zero: a damped controller that never swings up)
  and one limiting the torque to 0.45 (it balances only within 0.09 rad of the top, so any
  imitation error drops the pendulum);
- ``medium-replay``: like the replay buffer of an agent learning up to medium: in episode i of n
  each action is a uniform random torque with probability falling linearly from 1 (random) to 0
  (the medium policy);
- ``medium-expert``: the medium and expert datasets one after the other (as D4RL builds it).

Each file carries its own normalisation references, measured here on the same environment:
``metadata/ref_min_score`` (mean return of the uniform random policy) and ``ref_max_score`` (mean
return of the noise-free expert controller), over 100 episodes each, so that 0 is random and 100
is the expert, as in D4RL. Everything is seeded: the same ``seed`` gives the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from minrnn.rl.data import write_d4rl_hdf5
from minrnn.rl.envs import make_env

ENV_ID = "Pendulum-v1"
DATASETS = ("expert", "medium", "medium-replay", "medium-expert")
MAX_TORQUE = 2.0
EXPERT_NOISE = 0.1
SWING_GAIN = 1.5
MEDIUM_SWING_GAIN = 0.006
MEDIUM_NOISE = 0.2
REF_EPISODES = 100
# Default sizes (episodes of 200 steps): D4RL's medium-replay is also the smallest of the three.
EPISODES = {"expert": 200, "medium": 200, "medium-replay": 100}

Policy = Callable[[np.ndarray, np.random.Generator, int, int], np.ndarray]  # (obs (N, 3), rng, episode, n) -> torques (N, 1)


def expert_torque(obs: np.ndarray, swing_gain: float = SWING_GAIN) -> np.ndarray:
    """The scripted controller: obs (N, 3) = (cos, sin, angular velocity) -> torque (N, 1).

    With the angle measured from upright, Pendulum's dynamics are w' = 15 sin(angle) + 3 u, so the
    energy E = w^2 / 2 + 15 (cos(angle) - 1) (0 at rest upright) changes as E' = 3 u w: far from
    the top, u = -swing_gain E w pumps E towards 0; near it (|angle| < 0.6, |w| < 3) a PD
    controller u = -(10 angle + 2 w) balances. Torques are clipped to [-2, 2].
    """
    c, s, w = obs[:, 0], obs[:, 1], obs[:, 2]
    angle = np.arctan2(s, c)
    energy = 0.5 * w**2 + 15.0 * (c - 1.0)
    swing = -swing_gain * energy * w
    balance = -(10.0 * angle + 2.0 * w)
    near = (np.abs(angle) < 0.6) & (np.abs(w) < 3.0)
    return np.clip(np.where(near, balance, swing), -MAX_TORQUE, MAX_TORQUE)[:, None]


def _random_policy(obs, rng, episode, n):
    return rng.uniform(-MAX_TORQUE, MAX_TORQUE, size=(len(obs), 1))


def _controller(swing_gain: float, noise: float, eps_of_episode: Callable[[np.ndarray, int], np.ndarray] | None = None) -> Policy:
    """The controller with ``swing_gain``, plus Gaussian noise; with ``eps_of_episode``, each
    action is replaced by a uniform random torque with that probability (per episode index)."""

    def policy(obs, rng, episode, n):
        action = expert_torque(obs, swing_gain) + noise * rng.normal(size=(len(obs), 1))
        if eps_of_episode is None:
            return action
        replace = rng.random(len(obs)) < eps_of_episode(episode, n)
        return np.where(replace[:, None], rng.uniform(-MAX_TORQUE, MAX_TORQUE, size=(len(obs), 1)), action)

    return policy


def _policy(name: str) -> Policy:
    if name == "random":
        return _random_policy
    if name == "expert-clean":
        return _controller(SWING_GAIN, 0.0)
    if name == "expert":
        return _controller(SWING_GAIN, EXPERT_NOISE)
    if name == "medium":
        return _controller(MEDIUM_SWING_GAIN, MEDIUM_NOISE)
    if name == "medium-replay":
        return _controller(MEDIUM_SWING_GAIN, MEDIUM_NOISE, lambda ep, n: 1.0 - ep / max(n - 1, 1))
    raise ValueError(f"unknown Pendulum policy {name!r}")


def rollout(policy: Policy, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Run ``episodes`` whole episodes of ``policy`` side by side (episode i from
    ``reset(seed=seed + i)``, noise from ``default_rng(seed)``); returns D4RL's flat arrays."""
    envs = [make_env(ENV_ID) for _ in range(episodes)]
    rng = np.random.default_rng(seed)
    index = np.arange(episodes)
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float64)
    steps: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}
    done = np.zeros(episodes, dtype=bool)
    while not done.all():
        action = np.clip(policy(obs, rng, index, episodes), -MAX_TORQUE, MAX_TORQUE).astype(np.float32)
        out = [env.step(action[i]) for i, env in enumerate(envs)]
        next_obs = np.stack([o[0] for o in out]).astype(np.float64)
        terminal = np.array([o[2] for o in out])
        done = terminal | np.array([o[3] for o in out])
        if done.any() and not done.all():
            raise RuntimeError("Pendulum episodes are expected to end together (200 steps)")
        for key, value in zip(steps, (obs, action, np.array([o[1] for o in out]), next_obs, terminal, done & ~terminal)):
            steps[key].append(value)
        obs = next_obs
    for env in envs:
        env.close()
    # Pendulum's episodes all last 200 steps: (steps, episodes, ...) -> episode after episode.
    return {k: np.swapaxes(np.stack(v), 0, 1).reshape(episodes * len(v), *np.shape(v[0])[1:]) for k, v in steps.items()}


def episode_returns(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Returns of the episodes in flat arrays that end at ``terminals | timeouts``."""
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    return np.add.reduceat(arrays["rewards"], np.concatenate([[0], ends[:-1] + 1]))


def reference_scores(seed: int = 0) -> tuple[float, float]:
    """(random, expert) mean returns over 100 episodes each: the normalisation references."""
    base = 10_000_000 * seed
    random_returns = episode_returns(rollout(_policy("random"), REF_EPISODES, base + 8_000_000))
    expert_returns = episode_returns(rollout(_policy("expert-clean"), REF_EPISODES, base + 9_000_000))
    return float(random_returns.mean()), float(expert_returns.mean())


def make_arrays(name: str, episodes: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """The flat arrays of dataset ``name`` (one of `DATASETS`) with ``episodes`` episodes per
    behaviour policy (default `EPISODES`; medium-expert: that many of each)."""
    if name not in DATASETS:
        raise ValueError(f"unknown Pendulum dataset {name!r}; choose from {list(DATASETS)}")
    if name == "medium-expert":
        parts = [make_arrays(part, episodes, seed) for part in ("medium", "expert")]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n = EPISODES[name] if episodes is None else episodes
    if n < 1:
        raise ValueError(f"episodes must be >= 1, got {n}")
    # Env seeds of each behaviour policy lie apart from each other and from evaluation's (0, 1, ...).
    offset = {"expert": 1_000_000, "medium": 2_000_000, "medium-replay": 3_000_000}[name]
    return rollout(_policy(name), n, 10_000_000 * seed + offset)


def make_dataset(name: str, out: str | Path, episodes: int | None = None, seed: int = 0, refs: tuple[float, float] | None = None) -> Path:
    """Write dataset ``name`` to ``out`` in the D4RL layout with its references (computed if not
    given) and how it was made under ``metadata/``."""
    arrays = make_arrays(name, episodes, seed)
    refs = refs if refs is not None else reference_scores(seed)
    metadata = {
        "env_id": ENV_ID,
        "dataset": name,
        "generator": "minrnn.rl.pendulum",
        "seed": seed,
        "ref_min_score": refs[0],
        "ref_max_score": refs[1],
    }
    return write_d4rl_hdf5(out, **arrays, metadata=metadata)


def make_all(folder: str | Path, names=DATASETS, episodes: int | None = None, seed: int = 0) -> list[Path]:
    """Write ``pendulum-<name>-v0.hdf5`` for each of ``names`` into ``folder`` (references
    computed once)."""
    refs = reference_scores(seed)
    return [make_dataset(name, Path(folder) / f"pendulum-{name}-v0.hdf5", episodes, seed, refs) for name in names]
