"""The local Pendulum-v1 dataset generator: reproducible, in D4RL's layout, with its references."""

import numpy as np
import pytest

pytest.importorskip("gymnasium", reason="the rl extra (pip install 'minrnn[rl]') is not installed")
pytest.importorskip("h5py", reason="the rl extra (pip install 'minrnn[rl]') is not installed")

from minrnn.rl import pendulum  # noqa: E402
from minrnn.rl.data import load_d4rl_hdf5  # noqa: E402


def test_expert_balances_at_the_top_and_pumps_energy_below():
    up = pendulum.expert_torque(np.array([[1.0, 0.0, 0.0], [np.cos(0.2), np.sin(0.2), 0.0]]))
    assert up[0, 0] == 0.0 and up[1, 0] < 0  # pushes back towards upright
    hanging = pendulum.expert_torque(np.array([[-1.0, 0.0, 1.0], [-1.0, 0.0, -1.0]]))
    assert hanging[0, 0] > 0 and hanging[1, 0] < 0  # torque along the motion adds energy
    assert np.abs(pendulum.expert_torque(np.random.default_rng(0).normal(size=(100, 3)) * 5)).max() <= 2.0


def test_datasets_are_reproducible_and_load_through_the_d4rl_reader(tmp_path):
    a = pendulum.make_arrays("medium-replay", episodes=3, seed=5)
    b = pendulum.make_arrays("medium-replay", episodes=3, seed=5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["observations"].shape == (600, 3) and a["actions"].shape == (600, 1)
    assert a["timeouts"].sum() == 3 and not a["terminals"].any()
    np.testing.assert_array_equal(a["next_observations"][:199], a["observations"][1:200])
    other = pendulum.make_arrays("medium-replay", episodes=3, seed=6)
    assert not np.array_equal(a["rewards"], other["rewards"])

    path = pendulum.make_dataset("medium-expert", tmp_path / "me.hdf5", episodes=2, seed=5, refs=(-1200.0, -150.0))
    t = load_d4rl_hdf5(path)
    assert t.n_episodes == 4 and t.lengths.tolist() == [200] * 4  # 2 medium then 2 expert
    assert t.env_id == "Pendulum-v1" and t.ref_scores == (-1200.0, -150.0)
    medium = pendulum.make_arrays("medium", episodes=2, seed=5)
    np.testing.assert_array_equal(t.observations[:400], medium["observations"].astype(np.float32))
    with pytest.raises(ValueError, match="unknown Pendulum dataset"):
        pendulum.make_arrays("expert-replay")


@pytest.mark.slow
def test_references_and_dataset_quality_are_ordered():
    random_ref, expert_ref = pendulum.reference_scores(seed=0)
    assert random_ref < -1000 and expert_ref > -250
    means = {name: pendulum.episode_returns(pendulum.make_arrays(name, episodes=40)).mean() for name in ("expert", "medium", "medium-replay")}
    assert random_ref < means["medium-replay"] < means["medium"] < means["expert"]
