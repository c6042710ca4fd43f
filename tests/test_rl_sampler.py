"""Decision Transformer's training windows against a hand computation."""

import numpy as np
import pytest
import torch

from minrnn.rl.data import Trajectories
from minrnn.rl.sampler import PAD_ACTION, Normalizer, WindowSampler, pad_left, returns_to_go


def tiny() -> Trajectories:
    """Two episodes: A of 3 steps (rewards 1, 2, 3), B of 5 steps (rewards 10..14)."""
    obs = np.array([[0, 0], [1, 2], [2, 4], [3, 6], [4, 8], [5, 10], [6, 12], [7, 14]], dtype=np.float32)
    actions = np.array([[-1.0], [-0.5], [0.0], [0.5], [1.0], [2.0], [-2.0], [0.25]], dtype=np.float32)
    rewards = np.array([1, 2, 3, 10, 11, 12, 13, 14], dtype=np.float64)
    return Trajectories(obs, actions, rewards, np.array([0, 3]), np.array([3, 5]), np.array([False, False]), "tiny")


def test_returns_to_go_by_hand():
    np.testing.assert_allclose(returns_to_go(tiny()), [6, 5, 3, 60, 50, 39, 27, 14])


def test_normalizer_by_hand():
    norm = Normalizer.fit(tiny(), scale=10.0, action_low=-2.0, action_high=2.0)
    np.testing.assert_allclose(norm.state_mean, [3.5, 7.0])
    np.testing.assert_allclose(norm.state_std, [np.sqrt(5.25) + 1e-6, np.sqrt(21.0) + 1e-6])
    np.testing.assert_allclose(norm.actions(np.array([[-2.0], [0.0], [1.0], [3.0]])).numpy().ravel(), [-1.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(norm.env_actions(torch.tensor([[-1.0], [0.5]])).ravel(), [-2.0, 1.0])
    assert Normalizer.from_dict(norm.to_dict()).to_dict() == norm.to_dict()
    with pytest.raises(ValueError, match="scale"):
        Normalizer.fit(tiny(), scale=0.0)


def test_windows_by_hand():
    data = tiny()
    norm = Normalizer.fit(data, scale=10.0, action_low=-2.0, action_high=2.0)
    sampler = WindowSampler(data, norm, context=4, max_ep_len=1000)
    # B from step 0: 4 real steps; B from step 3: 2 steps, 2 pads; A from step 2: 1 step, 3 pads
    w = sampler.windows(torch.tensor([1, 1, 0]), torch.tensor([0, 3, 2]))
    rtg = w["returns_to_go"][..., 0]
    torch.testing.assert_close(rtg[0], torch.tensor([6.0, 5.0, 3.9, 2.7]))
    torch.testing.assert_close(rtg[1], torch.tensor([0.0, 0.0, 2.7, 1.4]))
    torch.testing.assert_close(rtg[2], torch.tensor([0.0, 0.0, 0.0, 0.3]))
    assert w["timesteps"].tolist() == [[0, 1, 2, 3], [0, 0, 3, 4], [0, 0, 0, 2]]
    assert w["mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]
    mean, std = torch.tensor([3.5, 7.0]), torch.tensor([np.sqrt(5.25) + 1e-6, np.sqrt(21.0) + 1e-6], dtype=torch.float32)
    torch.testing.assert_close(w["states"][1, 2:], (torch.tensor([[6.0, 12.0], [7.0, 14.0]]) - mean) / std)
    assert w["states"][1, :2].abs().sum() == 0  # padding: 0 after normalisation
    torch.testing.assert_close(w["states"][2, 3], (torch.tensor([2.0, 4.0]) - mean) / std)
    # actions in [-1, 1] (bounds [-2, 2] here), padded with -10
    assert w["actions"][..., 0].tolist() == [[0.25, 0.5, 1.0, -1.0], [PAD_ACTION, PAD_ACTION, -1.0, 0.125], [PAD_ACTION] * 3 + [0.0]]


def test_timesteps_are_capped():
    data = tiny()
    sampler = WindowSampler(data, Normalizer.fit(data, 1.0), context=3, max_ep_len=2)
    assert sampler.windows(torch.tensor([1]), torch.tensor([1]))["timesteps"].tolist() == [[1, 1, 1]]


def reference_window(data, norm, K, traj, si, max_ep_len=1000):
    """DT's get_batch for one window, written as its loop (float64, numpy)."""
    ep = data.episode(traj)
    rew = ep["rewards"]
    s = ep["observations"][si : si + K].astype(np.float64)
    a = ep["actions"][si : si + K].astype(np.float64)
    tlen = len(s)
    rtg = np.array([rew[i:].sum() for i in range(si, si + tlen)]) / norm.scale
    ts = np.minimum(np.arange(si, si + tlen), max_ep_len - 1)
    s = (s - norm.state_mean) / norm.state_std
    a = 2 * (np.clip(a, norm.action_low, norm.action_high) - norm.action_low) / (norm.action_high - norm.action_low) - 1
    pad = K - tlen
    return {
        "states": np.concatenate([np.zeros((pad, s.shape[1])), s]),
        "actions": np.concatenate([np.full((pad, a.shape[1]), PAD_ACTION), a]),
        "returns_to_go": np.concatenate([np.zeros(pad), rtg])[:, None],
        "timesteps": np.concatenate([np.zeros(pad, dtype=np.int64), ts]),
        "mask": np.concatenate([np.zeros(pad), np.ones(tlen)]),
    }


def test_random_windows_match_the_reference_loop():
    rng = np.random.default_rng(3)
    lengths = np.array([1, 7, 30, 2, 19])
    n = lengths.sum()
    data = Trajectories(
        rng.normal(size=(n, 3)).astype(np.float32), rng.uniform(-1.5, 1.5, size=(n, 2)).astype(np.float32), rng.normal(size=n),
        np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths, np.zeros(5, bool), "random",
    )
    norm = Normalizer.fit(data, 5.0)
    sampler = WindowSampler(data, norm, context=8, max_ep_len=25)
    batch = sampler.sample(64, torch.Generator().manual_seed(0))
    traj, start = sampler.draw(64, torch.Generator().manual_seed(0))
    for b in range(64):
        ref = reference_window(data, norm, 8, int(traj[b]), int(start[b]), max_ep_len=25)
        for key, value in ref.items():
            np.testing.assert_allclose(batch[key][b].numpy(), value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_draws_are_proportional_to_length_and_deterministic():
    data = tiny()
    sampler = WindowSampler(data, Normalizer.fit(data, 1.0), context=4)
    traj, start = sampler.draw(40_000, torch.Generator().manual_seed(1))
    share_b = traj.float().mean().item()  # episode B has 5 of the 8 steps
    assert abs(share_b - 5 / 8) < 0.01
    for i, n in ((0, 3), (1, 5)):
        counts = torch.bincount(start[traj == i], minlength=n).float()
        assert len(counts) == n  # never past the last step
        assert (counts / counts.sum() - 1 / n).abs().max() < 0.02  # uniform start
    a = sampler.sample(16, torch.Generator().manual_seed(7))
    b = sampler.sample(16, torch.Generator().manual_seed(7))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pad_left():
    w = {"returns_to_go": torch.ones(2, 3, 1), "states": torch.ones(2, 3, 4), "actions": torch.ones(2, 3, 1), "timesteps": torch.arange(3).expand(2, 3)}
    p = pad_left(w, 5)
    assert p["states"].shape == (2, 5, 4) and p["mask"][0].tolist() == [0, 0, 1, 1, 1]
    assert p["actions"][0, :2, 0].tolist() == [PAD_ACTION, PAD_ACTION] and p["timesteps"][1].tolist() == [0, 0, 0, 1, 2]
    with pytest.raises(ValueError, match="more than context"):
        pad_left(w, 2)
