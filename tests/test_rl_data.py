"""Offline RL datasets: D4RL HDF5, Decision Transformer pickles and Minari, read from files the
tests write in those exact layouts; every bad-data case; D4RL's normalised score."""

import os
import pickle
import warnings

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="the rl extra (pip install 'minrnn[rl]') is not installed")

from minrnn.rl.data import DatasetError, episode_ends, load_d4rl_hdf5, load_dt_pickle, load_minari, load_trajectories  # noqa: E402
from minrnn.rl.scores import D4RL_REF_SCORES, d4rl_family, normalized_score  # noqa: E402


def flat_data(n=23, obs_dim=4, act_dim=2, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(dtype),
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(dtype),
        "rewards": rng.normal(size=n).astype(dtype),
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": np.zeros(n, dtype=bool),
    }


def write_h5(path, arrays, extra=True):
    """A file in D4RL's layout: the flat keys plus the ones readers ignore."""
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v
        if extra and "observations" in arrays:
            f["next_observations"] = np.roll(arrays["observations"], -1, axis=0)
            f["infos/qpos"] = np.zeros((len(arrays["observations"]), 3))
            f["metadata/algorithm"] = "SAC"
            f["metadata/policy/fc0/weight"] = np.zeros((2, 2))
    return path


@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # medium-replay files are float64
def test_d4rl_episodes_end_at_terminals_or_timeouts_and_tail_is_dropped(tmp_path, dtype):
    d = flat_data(23, dtype=dtype)
    d["terminals"][4] = True  # a fall: episode rows 0..4
    d["timeouts"][11] = True  # a time-out: rows 5..11
    d["terminals"][15] = True  # rows 12..15
    d["timeouts"][19] = True  # rows 16..19; rows 20..22 are cut off
    t = load_d4rl_hdf5(write_h5(tmp_path / f"x-{np.dtype(dtype).name}.hdf5", d))
    assert t.lengths.tolist() == [5, 7, 4, 4]
    assert t.starts.tolist() == [0, 5, 12, 16]
    assert t.terminated.tolist() == [True, False, True, False]
    assert t.dropped_steps == 3 and t.n_steps == 20
    assert t.observations.dtype == np.float32 and t.actions.dtype == np.float32 and t.rewards.dtype == np.float64
    np.testing.assert_array_equal(t.observations, d["observations"][:20].astype(np.float32))
    np.testing.assert_array_equal(t.rewards, d["rewards"][:20].astype(np.float64))
    np.testing.assert_allclose(t.returns[1], d["rewards"][5:12].astype(np.float64).sum())
    ep = t.episode(2)
    np.testing.assert_array_equal(ep["actions"], d["actions"][12:16].astype(np.float32))
    assert t.env_id is None and t.ref_scores is None


def test_d4rl_without_timeouts_cuts_at_the_time_limit(tmp_path):
    d = flat_data(23)
    del d["timeouts"]
    d["terminals"][5] = True
    # max 4 steps: rows 0..3 (limit), 4..5 (fall), 6..9, 10..13, 14..17, 18..21 (limits); row 22 cut off
    t = load_d4rl_hdf5(write_h5(tmp_path / "old.hdf5", d), max_episode_steps=4)
    assert t.lengths.tolist() == [4, 2, 4, 4, 4, 4]
    assert t.terminated.tolist() == [False, True, False, False, False, False]
    assert t.dropped_steps == 1
    assert episode_ends(np.zeros(3, bool), None, 1000).sum() == 0


def test_d4rl_reads_the_local_generators_metadata(tmp_path):
    from minrnn.rl.data import write_d4rl_hdf5

    d = flat_data(10)
    d["timeouts"][9] = True
    path = write_d4rl_hdf5(tmp_path / "p.hdf5", **d, metadata={"env_id": "Pendulum-v1", "ref_min_score": -1000.0, "ref_max_score": -150.0})
    t = load_trajectories(path)
    assert t.env_id == "Pendulum-v1" and t.ref_scores == (-1000.0, -150.0)
    assert t.lengths.tolist() == [10]


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "terminals"])
def test_missing_key_is_named(tmp_path, key):
    d = flat_data()
    del d[key]
    path = write_h5(tmp_path / "bad.hdf5", d)
    with pytest.raises(DatasetError, match=rf"bad\.hdf5: missing key '{key}'"):
        load_d4rl_hdf5(path)


@pytest.mark.parametrize("key", ["actions", "rewards", "terminals", "timeouts"])
def test_different_lengths_are_named(tmp_path, key):
    d = flat_data(12)
    d["timeouts"][5] = True
    d[key] = d[key][:-2]
    with pytest.raises(DatasetError, match=rf"bad\.hdf5: key '{key}' has 10 rows, but 'observations' has 12"):
        load_d4rl_hdf5(write_h5(tmp_path / "bad.hdf5", d))


@pytest.mark.parametrize("key,value", [("observations", np.nan), ("rewards", np.inf), ("actions", -np.inf)])
def test_nan_inf_values_are_named(tmp_path, key, value):
    d = flat_data(12, dtype=np.float64)
    d["timeouts"][5] = True
    d[key][7] = value
    with pytest.raises(DatasetError, match=rf"bad\.hdf5: key '{key}' has \d+ NaN/Inf value\(s\), the first in row 7"):
        load_d4rl_hdf5(write_h5(tmp_path / "bad.hdf5", d))


def test_empty_and_episodeless_datasets(tmp_path):
    empty = {k: v[:0] for k, v in flat_data().items()}
    with pytest.raises(DatasetError, match=r"empty\.hdf5: the dataset is empty"):
        load_d4rl_hdf5(write_h5(tmp_path / "empty.hdf5", empty, extra=False))
    with pytest.raises(DatasetError, match=r"open\.hdf5: no complete episode"):
        load_d4rl_hdf5(write_h5(tmp_path / "open.hdf5", flat_data()))


def test_action_dimension_must_match_the_environment(tmp_path):
    pytest.importorskip("gymnasium")
    from minrnn.rl.envs import env_info

    d = flat_data(10, obs_dim=3, act_dim=2)
    d["timeouts"][9] = True
    t = load_d4rl_hdf5(write_h5(tmp_path / "two.hdf5", d))
    info = env_info("Pendulum-v1")
    assert (info.obs_dim, info.act_dim) == (3, 1)
    with pytest.raises(DatasetError, match=r"two\.hdf5: key 'actions' has 2 dimensions per step, but Pendulum-v1's action space has 1"):
        t.check_env(info.obs_dim, info.act_dim, info.env_id)
    # D4RL's MuJoCo tasks are known without the simulator
    hopper = env_info("hopper-medium-v2")
    assert (hopper.obs_dim, hopper.act_dim) == (11, 3)


def test_unreadable_files(tmp_path):
    (tmp_path / "junk.hdf5").write_text("not hdf5")
    with pytest.raises(DatasetError, match=r"junk\.hdf5: not a readable HDF5 file"):
        load_trajectories(tmp_path / "junk.hdf5")
    with pytest.raises(DatasetError, match=r"gone\.hdf5: no such file"):
        load_trajectories(tmp_path / "gone.hdf5")
    with pytest.raises(DatasetError, match=r"data\.csv: unknown dataset format"):
        load_trajectories(tmp_path / "data.csv")
    with h5py.File(tmp_path / "group.hdf5", "w") as f:
        f["observations/x"] = np.zeros(3)
    with pytest.raises(DatasetError, match=r"group\.hdf5: key 'observations' is a group"):
        load_trajectories(tmp_path / "group.hdf5")


# ----------------------------------------------------------------------------- DT pickle


def dt_paths():
    rng = np.random.default_rng(1)
    paths = []
    for n, fell in ((6, True), (9, False)):
        terminals = np.zeros(n, dtype=bool)
        terminals[-1] = fell
        paths.append(
            {
                "observations": rng.normal(size=(n, 5)).astype(np.float32),
                "next_observations": rng.normal(size=(n, 5)).astype(np.float32),
                "actions": rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
                "rewards": rng.normal(size=n).astype(np.float32),
                "terminals": terminals,
            }
        )
    return paths


def write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def test_dt_pickle(tmp_path):
    paths = dt_paths()
    t = load_trajectories(write_pickle(tmp_path / "hopper-medium-v2.pkl", paths))
    assert t.lengths.tolist() == [6, 9] and t.terminated.tolist() == [True, False]
    np.testing.assert_array_equal(t.episode(1)["observations"], paths[1]["observations"])
    np.testing.assert_allclose(t.returns, [p["rewards"].astype(np.float64).sum() for p in paths])


def test_dt_pickle_bad_data(tmp_path):
    paths = dt_paths()
    del paths[1]["actions"]
    with pytest.raises(DatasetError, match=r"a\.pkl: trajectory 1: missing key 'actions'"):
        load_dt_pickle(write_pickle(tmp_path / "a.pkl", paths))
    paths = dt_paths()
    paths[0]["rewards"] = paths[0]["rewards"][:-1]
    with pytest.raises(DatasetError, match=r"b\.pkl: trajectory 0: key 'rewards' has 5 rows, but 'observations' has 6"):
        load_dt_pickle(write_pickle(tmp_path / "b.pkl", paths))
    paths = dt_paths()
    paths[1]["observations"][3, 2] = np.nan
    with pytest.raises(DatasetError, match=r"c\.pkl: trajectory 1: key 'observations' has 1 NaN/Inf"):
        load_dt_pickle(write_pickle(tmp_path / "c.pkl", paths))
    with pytest.raises(DatasetError, match=r"d\.pkl: the dataset is empty"):
        load_dt_pickle(write_pickle(tmp_path / "d.pkl", []))
    with pytest.raises(DatasetError, match=r"e\.pkl: expected a list of trajectories"):
        load_dt_pickle(write_pickle(tmp_path / "e.pkl", {"observations": 1}))
    (tmp_path / "f.pkl").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"f\.pkl: not a readable pickle"):
        load_dt_pickle(tmp_path / "f.pkl")


# ----------------------------------------------------------------------------- Minari


@pytest.fixture
def minari_home(tmp_path, monkeypatch):
    pytest.importorskip("minari", reason="minari is not installed (pip install 'minrnn[rl]')")
    pytest.importorskip("PIL", reason="minari's HDF5 storage needs pillow")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def test_minari_dataset_written_by_minari(minari_home):
    import minari
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(2)
    episodes = []
    for i, (n, how) in enumerate(((5, "truncated"), (7, "terminated"), (4, "open"))):
        flags = np.zeros(n, dtype=bool)
        terminations, truncations = flags.copy(), flags.copy()
        if how == "terminated":
            terminations[-1] = True
        elif how == "truncated":
            truncations[-1] = True
        episodes.append(
            EpisodeBuffer(
                id=i,
                observations=rng.normal(size=(n + 1, 3)).astype(np.float32),
                actions=rng.uniform(-2, 2, size=(n, 1)).astype(np.float32),
                rewards=rng.normal(size=n),
                terminations=terminations,
                truncations=truncations,
                infos={},
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari asks for author, description, ...
        minari.create_dataset_from_buffers(
            "test/pendulum/tiny-v0", episodes, env="Pendulum-v1", algorithm_name="random", data_format="hdf5",
            ref_min_score=-1200.0, ref_max_score=-150.0,
        )
    t = load_trajectories("minari:test/pendulum/tiny-v0")
    assert t.lengths.tolist() == [5, 7] and t.terminated.tolist() == [False, True]
    assert t.dropped_steps == 4  # the episode that ended neither way
    assert t.env_id == "Pendulum-v1" and t.ref_scores == (-1200.0, -150.0)
    np.testing.assert_array_equal(t.episode(1)["observations"], episodes[1].observations[:-1])
    np.testing.assert_allclose(t.episode(0)["rewards"], episodes[0].rewards)


def test_minari_never_downloads(minari_home):
    with pytest.raises(DatasetError, match=r"minari:mujoco/hopper/medium-v0: not found locally .*never downloads"):
        load_minari("mujoco/hopper/medium-v0")
    assert not os.path.exists(minari_home / "mujoco")


# ----------------------------------------------------------------------------- scores


def test_normalized_score():
    lo, hi = D4RL_REF_SCORES["hopper"]
    assert normalized_score("hopper-medium-v2", lo) == pytest.approx(0.0)
    assert normalized_score("Hopper-v5", hi) == pytest.approx(100.0)
    np.testing.assert_allclose(normalized_score("walker2d", [1.629008, 4592.3]), [0.0, 100.0])
    assert normalized_score("halfcheetah", 12135.0 / 2 - 280.178953 / 2) == pytest.approx(50.0)
    assert normalized_score("Pendulum-v1", -500.0, refs=(-1000.0, 0.0)) == pytest.approx(50.0)
    assert d4rl_family("mujoco/halfcheetah/medium-v0") == "halfcheetah" and d4rl_family("Pendulum-v1") is None
    with pytest.raises(ValueError, match="no D4RL reference returns for 'Pendulum-v1'"):
        normalized_score("Pendulum-v1", -500.0)
    with pytest.raises(ValueError, match="must exceed"):
        normalized_score("x", 1.0, refs=(1.0, 1.0))


@pytest.mark.slow  # a fresh interpreter importing torch
def test_imports_stay_light():
    """`import minrnn` does not import minrnn.rl; minrnn.rl imports none of the rl extra's packages."""
    import subprocess
    import sys

    code = (
        "import sys, minrnn; assert 'minrnn.rl' not in sys.modules; "
        "import minrnn.rl, minrnn.rl.evaluate, minrnn.rl.pendulum; "
        "heavy = [m for m in ('h5py', 'gymnasium', 'minari') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
