"""D4RL's normalised score and the facts about the D4RL MuJoCo tasks that evaluation needs.

normalised score = 100 (R - random) / (expert - random), with D4RL's reference returns of a random
and an expert policy (``d4rl/infos.py``: REF_MIN_SCORE / REF_MAX_SCORE, the same for every dataset
of an environment). 0 is the random policy, 100 the expert.
"""

from __future__ import annotations

import re

import numpy as np

# environment family -> (random return, expert return), from D4RL's infos
D4RL_REF_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
}
# Decision Transformer's evaluation targets (returns to condition on) per family, and its
# return scale (returns-to-go are divided by it)
DT_TARGETS: dict[str, tuple[float, ...]] = {"hopper": (3600.0, 1800.0), "halfcheetah": (12000.0, 6000.0), "walker2d": (5000.0, 2500.0)}
DT_SCALE = 1000.0


def d4rl_family(env: str) -> str | None:
    """The D4RL family of an environment or dataset name ("Hopper-v5", "hopper-medium-v2",
    "mujoco/hopper/medium-v0" -> "hopper"), or None."""
    name = re.sub(r"[^a-z0-9]", "", env.lower())
    for family in D4RL_REF_SCORES:
        if family in name:
            return family
    return None


def normalized_score(env: str, returns, refs: tuple[float, float] | None = None):
    """100 (R - random) / (expert - random) for the return(s) ``returns`` (a number or an array).

    ``refs`` = (random, expert) overrides D4RL's references for ``env`` (e.g. a dataset's own, as
    the local Pendulum datasets carry); without them ``env`` must be a D4RL MuJoCo environment.
    """
    if refs is None:
        family = d4rl_family(env)
        if family is None:
            raise ValueError(f"no D4RL reference returns for {env!r} (known: {', '.join(D4RL_REF_SCORES)}); pass refs=(random, expert)")
        refs = D4RL_REF_SCORES[family]
    low, high = float(refs[0]), float(refs[1])
    if not high > low:
        raise ValueError(f"expert reference return must exceed the random one, got random={low}, expert={high}")
    score = 100.0 * (np.asarray(returns, dtype=np.float64) - low) / (high - low)
    return float(score) if score.ndim == 0 else score
