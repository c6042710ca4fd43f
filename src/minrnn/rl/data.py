"""Offline RL datasets: one in-memory container (`Trajectories`) and its readers.

Three on-disk formats are read, each into the same container:

- D4RL HDF5 files (``~/.d4rl/datasets/<env>_<dataset>-v2.hdf5``): flat keys ``observations,
  actions, rewards, terminals, timeouts`` (``next_observations``, ``infos/*`` and ``metadata/*``
  are ignored). Medium-replay files are float64, the others float32. An episode ends at a row
  with ``terminals | timeouts``; the rows after the last such row are an episode cut off by the end
  of the file and are dropped, as Decision Transformer's converter did. Old files without
  ``timeouts`` end an episode at a terminal or after ``max_episode_steps`` rows (D4RL's
  ``sequence_dataset`` and DT's converter: the environment's time limit, 1000 for MuJoCo; their
  loops restart their step counter at 1 after a cut, which makes every later time-limited episode
  one row shorter: here each is cut at exactly ``max_episode_steps`` rows).
- Decision Transformer's converted ``{env}-{dataset}-v2.pkl``: a pickled list of trajectories,
  each a dict of arrays ``observations, actions, rewards`` (+ ``terminals`` or ``dones``). Pickle
  runs code when loaded: read only files you trust.
- Minari datasets (``minari:<dataset id>``), through ``minari.load_dataset``, which reads the local
  copy and never downloads.

Every reader checks what it reads and raises `DatasetError` (a ValueError) with a message that
names the file and the key: a missing key, arrays of different lengths, NaN or Inf values, no
complete episode; `Trajectories.check_env` compares the dimensions with an environment's.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")  # + "timeouts" in v2 files
MINARI_PREFIX = "minari:"


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the file (or Minari id) and the key."""


def _need(module: str):
    """Import an optional dependency of the ``rl`` extra, with an install hint if it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{module} is needed for offline RL data: pip install 'minrnn[rl]'") from e


@dataclass
class Trajectories:
    """Episodes of an offline dataset, stored one after another.

    ``observations`` (N, S) and ``actions`` (N, A) are float32, ``rewards`` (N,) float64 (returns
    are sums of up to 1000 rewards); episode ``i`` is the rows ``starts[i] : starts[i] +
    lengths[i]``. ``terminated[i]`` says whether it ended by a terminal state (a fall) rather than
    a time limit. ``ref_scores`` are the (random, expert) returns a dataset may carry for its
    normalised score (Minari metadata, or the local generator's files).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    terminated: np.ndarray
    source: str  # the file or "minari:<id>", for messages
    env_id: str | None = None  # as recorded in the dataset, if it records one
    ref_scores: tuple[float, float] | None = None
    dropped_steps: int = 0  # rows of a cut-off last episode that were dropped

    @property
    def n_episodes(self) -> int:
        return len(self.lengths)

    @property
    def n_steps(self) -> int:
        return int(self.lengths.sum())

    @property
    def state_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def returns(self) -> np.ndarray:
        """(E,) undiscounted return of each episode."""
        return np.add.reduceat(self.rewards, self.starts) if self.n_episodes else np.zeros(0)

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """Episode ``i`` as arrays (views)."""
        rows = slice(int(self.starts[i]), int(self.starts[i] + self.lengths[i]))
        return {"observations": self.observations[rows], "actions": self.actions[rows], "rewards": self.rewards[rows]}

    def summary(self) -> dict[str, Any]:
        """Sizes and return statistics (for ``minrnn data inspect`` and run logs)."""
        r = self.returns
        return {
            "source": self.source,
            "env_id": self.env_id,
            "episodes": self.n_episodes,
            "steps": self.n_steps,
            "dropped_steps": self.dropped_steps,
            "terminated_episodes": int(self.terminated.sum()),
            "state_dim": self.state_dim,
            "act_dim": self.act_dim,
            "episode_length": {"min": int(self.lengths.min()), "mean": float(self.lengths.mean()), "max": int(self.lengths.max())},
            "return": {"min": float(r.min()), "mean": float(r.mean()), "std": float(r.std()), "max": float(r.max())},
            "action_range": [float(self.actions.min()), float(self.actions.max())],
            "ref_scores": list(self.ref_scores) if self.ref_scores else None,
        }

    def check_env(self, obs_dim: int, act_dim: int, env_id: str) -> None:
        """Raise DatasetError if the dimensions differ from the environment ``env_id``'s."""
        if self.act_dim != act_dim:
            raise DatasetError(
                f"{self.source}: key 'actions' has {self.act_dim} dimensions per step, but {env_id}'s action space has {act_dim}"
            )
        if self.state_dim != obs_dim:
            raise DatasetError(
                f"{self.source}: key 'observations' has {self.state_dim} dimensions per step, but {env_id}'s observation space has {obs_dim}"
            )

    @classmethod
    def from_episodes(cls, episodes: list[dict[str, np.ndarray]], source: str, **kwargs) -> "Trajectories":
        """Concatenate episodes given as dicts of ``observations, actions, rewards`` and a bool
        ``terminated`` (each already checked by the caller's reader)."""
        if not episodes:
            raise DatasetError(f"{source}: the dataset holds no episode")
        lengths = np.array([len(e["rewards"]) for e in episodes], dtype=np.int64)
        return cls(
            observations=np.concatenate([e["observations"] for e in episodes]).astype(np.float32, copy=False),
            actions=np.concatenate([e["actions"] for e in episodes]).astype(np.float32, copy=False),
            rewards=np.concatenate([e["rewards"] for e in episodes]).astype(np.float64, copy=False),
            starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
            lengths=lengths,
            terminated=np.array([bool(e["terminated"]) for e in episodes]),
            source=source,
            **kwargs,
        )


# ----------------------------------------------------------------------------- checks


def _check_steps(source: str, arrays: dict[str, np.ndarray], where: str = "") -> dict[str, np.ndarray]:
    """Shapes, equal lengths and finite values of one dataset's (or trajectory's) arrays, named
    by key: observations (N, S), actions (N, A) or (N,), rewards (N,) or (N, 1), flags (N,) or
    (N, 1). Returns them as observations / actions 2-D, the rest 1-D."""
    out = {}
    for key, a in arrays.items():
        a = np.asarray(a)
        if key == "observations" and a.ndim != 2:
            raise DatasetError(f"{source}: {where}key '{key}' must be 2-D (steps, features), got shape {a.shape}")
        if key == "actions":
            a = a.reshape(-1, 1) if a.ndim == 1 else a
            if a.ndim != 2:
                raise DatasetError(f"{source}: {where}key '{key}' must be 2-D (steps, action dims), got shape {a.shape}")
        if key not in ("observations", "actions"):
            if a.ndim == 2 and a.shape[1] == 1:
                a = a[:, 0]
            if a.ndim != 1:
                raise DatasetError(f"{source}: {where}key '{key}' must be 1-D (steps,), got shape {a.shape}")
        if key in ("observations", "actions", "rewards"):
            if not np.issubdtype(a.dtype, np.number):
                raise DatasetError(f"{source}: {where}key '{key}' must hold numbers, got dtype {a.dtype}")
            bad = ~np.isfinite(a)
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise DatasetError(f"{source}: {where}key '{key}' has {int(bad.sum())} NaN/Inf value(s), the first in row {row}")
        out[key] = a
    n = {key: len(a) for key, a in out.items()}
    if len(set(n.values())) > 1:
        first = next(iter(n))
        other = next(k for k in n if n[k] != n[first])
        raise DatasetError(f"{source}: {where}key '{other}' has {n[other]} rows, but '{first}' has {n[first]} (all keys must have one row per step)")
    if n and next(iter(n.values())) == 0:
        raise DatasetError(f"{source}: {where}the dataset is empty (key '{next(iter(n))}' has 0 rows)")
    return out


def episode_ends(terminals: np.ndarray, timeouts: np.ndarray | None, max_episode_steps: int) -> np.ndarray:
    """(N,) bool: rows that end an episode. With ``timeouts``: ``terminals | timeouts``. Without
    (old D4RL files): a terminal, or the ``max_episode_steps``-th row since the last end."""
    terminals = terminals.astype(bool)
    if timeouts is not None:
        return terminals | timeouts.astype(bool)
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
    ends = terminals.copy()
    segment_start = 0
    for stop in [*np.flatnonzero(terminals).tolist(), len(terminals) - 1]:
        # time-limit cuts inside the run of rows [segment_start, stop]
        ends[segment_start + np.arange(max_episode_steps - 1, stop - segment_start + 1, max_episode_steps)] = True
        segment_start = stop + 1
    return ends


def _from_flat(
    source: str,
    arrays: dict[str, np.ndarray],
    timeouts: np.ndarray | None,
    max_episode_steps: int,
    **kwargs,
) -> Trajectories:
    """Trajectories from D4RL's flat arrays (already checked): split at the episode ends, drop the
    cut-off tail."""
    ends = np.flatnonzero(episode_ends(arrays["terminals"], timeouts, max_episode_steps))
    if len(ends) == 0:
        keys = "'terminals' or 'timeouts'" if timeouts is not None else f"'terminals' (and no episode reaches {max_episode_steps} steps)"
        raise DatasetError(f"{source}: no complete episode: no row ends one in {keys}")
    stop = int(ends[-1]) + 1
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    return Trajectories(
        observations=arrays["observations"][:stop].astype(np.float32, copy=False),
        actions=arrays["actions"][:stop].astype(np.float32, copy=False),
        rewards=arrays["rewards"][:stop].astype(np.float64, copy=False),
        starts=starts,
        lengths=(ends + 1 - starts).astype(np.int64),
        terminated=arrays["terminals"][ends].astype(bool),
        source=source,
        dropped_steps=len(arrays["rewards"]) - stop,
        **kwargs,
    )


# ----------------------------------------------------------------------------- D4RL HDF5


def load_d4rl_hdf5(path: str | Path, max_episode_steps: int = 1000) -> Trajectories:
    """Read a D4RL-layout HDF5 file (see the module docstring). ``max_episode_steps`` splits files
    without ``timeouts``. The local generator's files also carry ``metadata/env_id`` and
    ``metadata/ref_min_score`` / ``metadata/ref_max_score``, which are read when present."""
    h5py = _need("h5py")
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: not a readable HDF5 file ({e})") from e
    with f:
        arrays = {}
        for key in REQUIRED_KEYS:
            if key not in f:
                raise DatasetError(f"{path}: missing key '{key}' (a D4RL file has {', '.join(REQUIRED_KEYS)}, timeouts)")
            if not isinstance(f[key], h5py.Dataset):
                raise DatasetError(f"{path}: key '{key}' is a group, not an array")
            arrays[key] = f[key][()]
        if "timeouts" in f:
            arrays["timeouts"] = f["timeouts"][()]
        meta = {k: f[f"metadata/{k}"][()] for k in ("env_id", "ref_min_score", "ref_max_score") if f"metadata/{k}" in f}
    arrays = _check_steps(str(path), arrays)
    env_id = meta.get("env_id")
    refs = (float(meta["ref_min_score"]), float(meta["ref_max_score"])) if {"ref_min_score", "ref_max_score"} <= meta.keys() else None
    return _from_flat(
        str(path),
        arrays,
        arrays.get("timeouts"),
        max_episode_steps,
        env_id=env_id.decode() if isinstance(env_id, bytes) else env_id,
        ref_scores=refs,
    )


def write_d4rl_hdf5(
    path: str | Path,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminals: np.ndarray,
    timeouts: np.ndarray | None,
    *,
    next_observations: np.ndarray | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write flat arrays in D4RL's layout (``timeouts=None`` writes an old-style file without
    them); ``metadata`` values go to ``metadata/<key>``. Returns the path."""
    h5py = _need("h5py")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f["observations"] = observations
        f["actions"] = actions
        f["rewards"] = rewards
        f["terminals"] = np.asarray(terminals, dtype=bool)
        if timeouts is not None:
            f["timeouts"] = np.asarray(timeouts, dtype=bool)
        if next_observations is not None:
            f["next_observations"] = next_observations
        for key, value in (metadata or {}).items():
            f[f"metadata/{key}"] = value
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- DT pickle


def load_dt_pickle(path: str | Path) -> Trajectories:
    """Read Decision Transformer's ``{env}-{dataset}-v2.pkl``: a list of trajectory dicts. A
    trajectory ends by a fall if its last ``terminals`` (or ``dones``) value is set."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            paths = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable pickle ({e!r})") from e
    if not isinstance(paths, (list, tuple)):
        raise DatasetError(f"{path}: expected a list of trajectories (dicts of arrays), got {type(paths).__name__}")
    if not paths:
        raise DatasetError(f"{path}: the dataset is empty (no trajectory)")
    episodes = []
    for i, traj in enumerate(paths):
        if not isinstance(traj, dict):
            raise DatasetError(f"{path}: trajectory {i} is a {type(traj).__name__}, not a dict of arrays")
        for key in ("observations", "actions", "rewards"):
            if key not in traj:
                raise DatasetError(f"{path}: trajectory {i}: missing key '{key}'")
        flag = "terminals" if "terminals" in traj else "dones" if "dones" in traj else None
        arrays = {k: traj[k] for k in ("observations", "actions", "rewards")}
        if flag is not None:
            arrays[flag] = traj[flag]
        arrays = _check_steps(str(path), arrays, where=f"trajectory {i}: ")
        arrays["terminated"] = bool(arrays[flag][-1]) if flag is not None else False
        episodes.append(arrays)
    return Trajectories.from_episodes(episodes, str(path))


# ----------------------------------------------------------------------------- Minari


def load_minari(dataset_id: str) -> Trajectories:
    """Read the local Minari dataset ``dataset_id`` (e.g. ``mujoco/hopper/medium-v0``) with
    ``minari.load_dataset`` (never downloads). Its last episode is dropped if it ended neither by
    termination nor truncation. The dataset's ``ref_min_score`` / ``ref_max_score`` and env id
    are kept."""
    minari = _need("minari")
    spaces = _need("gymnasium.spaces")
    source = MINARI_PREFIX + dataset_id
    try:
        ds = minari.load_dataset(dataset_id)
    except FileNotFoundError as e:
        raise DatasetError(f"{source}: not found locally ({e}); minrnn never downloads: run `minari download {dataset_id}` first") from e
    except ValueError as e:
        raise DatasetError(f"{source}: cannot be read ({e})") from e
    for name, space in (("observations", ds.observation_space), ("actions", ds.action_space)):
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise DatasetError(f"{source}: key '{name}' must be a flat Box space, got {space}")
    episodes = []
    dropped = 0
    for ep in ds.iterate_episodes():
        arrays = {
            "observations": np.asarray(ep.observations)[:-1],  # Minari keeps the final observation too
            "actions": ep.actions,
            "rewards": ep.rewards,
            "terminations": ep.terminations,
            "truncations": ep.truncations,
        }
        arrays = _check_steps(source, arrays, where=f"episode {ep.id}: ")
        terminated, truncated = bool(arrays["terminations"][-1]), bool(arrays["truncations"][-1])
        if not (terminated or truncated):
            dropped += len(arrays["rewards"])  # an episode cut off by the end of collection
            continue
        arrays["terminated"] = terminated
        episodes.append(arrays)
    meta = ds.storage.metadata
    refs = None
    if meta.get("ref_min_score") is not None and meta.get("ref_max_score") is not None:
        refs = (float(meta["ref_min_score"]), float(meta["ref_max_score"]))
    env_id = ds.spec.env_spec.id if ds.spec.env_spec is not None else None
    return Trajectories.from_episodes(episodes, source, env_id=env_id, ref_scores=refs, dropped_steps=dropped)


# ----------------------------------------------------------------------------- dispatch


def load_trajectories(spec: str | Path, max_episode_steps: int = 1000) -> Trajectories:
    """Read a dataset by its name on the command line: ``minari:<dataset id>``, a DT pickle
    (``.pkl`` / ``.pickle``) or a D4RL HDF5 file (``.hdf5`` / ``.h5``)."""
    spec = str(spec)
    if spec.startswith(MINARI_PREFIX):
        return load_minari(spec[len(MINARI_PREFIX) :])
    suffix = Path(spec).suffix.lower()
    if suffix in (".pkl", ".pickle"):
        return load_dt_pickle(spec)
    if suffix in (".hdf5", ".h5"):
        return load_d4rl_hdf5(spec, max_episode_steps)
    raise DatasetError(f"{spec}: unknown dataset format; expected a D4RL .hdf5 file, a Decision Transformer .pkl file or minari:<dataset id>")
