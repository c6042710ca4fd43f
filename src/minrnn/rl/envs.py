"""Gymnasium environments: their spaces (to check a dataset against) and their construction.

D4RL's MuJoCo tasks need the ``mujoco`` package to run; training on their data does not, so the
dimensions of hopper, halfcheetah and walker2d are also known here without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minrnn.rl.scores import d4rl_family

# D4RL family -> (observation dims, action dims); their actions lie in [-1, 1]
D4RL_DIMS = {"hopper": (11, 3), "halfcheetah": (17, 6), "walker2d": (17, 6)}


@dataclass
class EnvInfo:
    """What training and evaluation need to know about an environment."""

    env_id: str
    obs_dim: int
    act_dim: int
    action_low: np.ndarray  # (A,)
    action_high: np.ndarray  # (A,)
    max_episode_steps: int | None  # the environment's time limit, if it has one


def _gymnasium():
    try:
        import gymnasium
    except ImportError as e:
        raise ImportError("gymnasium is needed for RL environments: pip install 'minrnn[rl]'") from e
    return gymnasium


def make_env(env_id: str):
    """``gymnasium.make(env_id)``, with a clear error when the id is unknown or its simulator is
    missing."""
    gym = _gymnasium()
    try:
        return gym.make(env_id)
    except gym.error.Error as e:
        raise ValueError(f"cannot make environment {env_id!r}: {e}") from e
    except ImportError as e:  # e.g. MuJoCo environments without the mujoco package
        raise ValueError(f"cannot make environment {env_id!r}: {e} (MuJoCo tasks need pip install 'gymnasium[mujoco]')") from e


def env_info(env_id: str) -> EnvInfo:
    """Spaces and time limit of ``env_id``: from gymnasium, or for a D4RL MuJoCo task whose
    simulator is not installed, from D4RL's known dimensions (bounds [-1, 1], 1000 steps)."""
    try:
        env = make_env(env_id)
    except ValueError:
        family = d4rl_family(env_id)
        if family is None:
            raise
        obs_dim, act_dim = D4RL_DIMS[family]
        return EnvInfo(env_id, obs_dim, act_dim, -np.ones(act_dim), np.ones(act_dim), 1000)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if len(obs_space.shape or ()) != 1 or len(act_space.shape or ()) != 1 or not hasattr(act_space, "low"):
            raise ValueError(f"{env_id}: observations and actions must be flat continuous (Box) spaces, got {obs_space} and {act_space}")
        spec = env.spec
        return EnvInfo(
            env_id,
            int(obs_space.shape[0]),
            int(act_space.shape[0]),
            np.asarray(act_space.low, dtype=np.float64),
            np.asarray(act_space.high, dtype=np.float64),
            spec.max_episode_steps if spec is not None else None,
        )
    finally:
        env.close()
