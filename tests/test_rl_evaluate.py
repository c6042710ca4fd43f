"""The lock-step evaluation loop, with policies and an environment of known behaviour."""

import json

import numpy as np
import pytest
import torch

from minrnn.rl.evaluate import EvalConfig, evaluate, run_episodes
from minrnn.rl.sampler import Normalizer


class Box:
    def __init__(self, low, high, shape):
        self.low, self.high, self.shape, self.dtype = np.full(shape, low), np.full(shape, high), shape, np.float32


class ToyEnv:
    """x' = 0.9 x + a (3 features, the action added to each); reward -|x_0|; the episode ends with
    a terminal after 3 + seed % 5 steps, or is truncated at 12. Records every reward."""

    def __init__(self):
        self.action_space = Box(-2.0, 2.0, (1,))
        self.rewards = []

    def reset(self, seed=None):
        self.x = np.array([1.0 + seed, -0.5, 0.25 * seed])
        self.t, self.end = 0, 3 + seed % 5
        self.rewards = []
        return self.x.copy(), {}

    def step(self, action):
        assert action.shape == (1,) and action.dtype == np.float32 and abs(action[0]) <= 2.0
        self.x = 0.9 * self.x + float(action[0])
        self.t += 1
        reward = -abs(self.x[0])
        self.rewards.append(reward)
        return self.x.copy(), reward, self.t >= self.end, self.t >= 12, {}

    def close(self):
        pass


class FeedbackPolicy(torch.nn.Module):
    """a_t = tanh(0.3 rtg_t + 0.2 s_t[0] - 0.5 a_{t-1}) in both modes (a_{-1} = 0), recording
    what it is given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def rule(self, rtg, state, prev):
        return torch.tanh(0.3 * rtg + 0.2 * state[:, :1] - 0.5 * prev)

    def forward(self, returns_to_go, states, actions, timesteps, mask=None):
        self.seen.append({"rtg": returns_to_go.clone(), "timesteps": timesteps.clone(), "mask": mask.clone(), "actions": actions.clone()})
        prev = torch.where(mask[:, -2:-1] > 0, actions[:, -2], 0.0) if actions.shape[1] > 1 else torch.zeros_like(actions[:, -1])
        out = torch.zeros_like(actions)
        out[:, -1] = self.rule(returns_to_go[:, -1], states[:, -1], prev)
        return out

    def init_state(self, batch_size):
        return torch.zeros(batch_size, 1)

    def step_state(self, returns_to_go, states, timesteps, state):
        self.seen.append({"rtg": returns_to_go.clone(), "timesteps": timesteps.clone()})
        return self.rule(returns_to_go, states, state), state

    def step_action(self, actions, timesteps, state):
        return actions.clone()


def normalizer():
    return Normalizer(np.array([0.5, -0.2, 0.1]), np.array([2.0, 1.0, 3.0]), np.array([-2.0]), np.array([2.0]), scale=10.0)


@pytest.mark.parametrize("mode", ["window", "recurrent"])
def test_lock_step_equals_one_episode_at_a_time(mode):
    norm, seeds = normalizer(), [0, 1, 2, 3, 4, 7]
    together = run_episodes(FeedbackPolicy(), [ToyEnv() for _ in seeds], seeds, 30.0, norm, mode, context=4, max_ep_len=20)
    alone = [run_episodes(FeedbackPolicy(), [ToyEnv()], [s], 30.0, norm, mode, context=4, max_ep_len=20) for s in seeds]
    assert together[1] == [3 + s % 5 for s in seeds]  # episodes of different lengths
    assert together[1] == [a[1][0] for a in alone]
    np.testing.assert_allclose(together[0], [a[0][0] for a in alone], rtol=1e-12)


def test_window_and_recurrent_modes_feed_the_same_history():
    norm, seeds = normalizer(), [0, 3, 4]
    window = run_episodes(FeedbackPolicy(), [ToyEnv() for _ in seeds], seeds, 30.0, norm, "window", context=3, max_ep_len=20)
    recurrent = run_episodes(FeedbackPolicy(), [ToyEnv() for _ in seeds], seeds, 30.0, norm, "recurrent", context=3, max_ep_len=20)
    assert window[1] == recurrent[1]
    np.testing.assert_allclose(window[0], recurrent[0], rtol=1e-6)


def test_return_to_go_follows_the_rewards_and_windows_are_padded():
    norm, policy, env = normalizer(), FeedbackPolicy(), ToyEnv()
    returns, lengths = run_episodes(policy, [env], [4], 30.0, norm, "recurrent", max_ep_len=20)
    rtg = torch.stack([s["rtg"][0, 0] for s in policy.seen]).numpy()
    expected = (30.0 - np.concatenate([[0.0], np.cumsum(env.rewards)[:-1]])) / 10.0
    np.testing.assert_allclose(rtg, expected, rtol=1e-6)
    assert lengths == [7] and returns[0] == pytest.approx(sum(env.rewards))
    assert [int(s["timesteps"][0]) for s in policy.seen] == list(range(7))

    policy = FeedbackPolicy()
    run_episodes(policy, [ToyEnv()], [4], 30.0, norm, "window", context=4, max_ep_len=20)
    assert policy.seen[0]["mask"][0].tolist() == [0, 0, 0, 1] and policy.seen[1]["mask"][0].tolist() == [0, 0, 1, 1]
    assert policy.seen[0]["actions"][0, :3, 0].tolist() == [-10.0] * 3  # padded as in training
    assert policy.seen[5]["timesteps"][0].tolist() == [2, 3, 4, 5] and policy.seen[5]["mask"].min() == 1
    # the rtg window at step 5 is the recurrent run's rtg at steps 2..5
    np.testing.assert_allclose(policy.seen[5]["rtg"][0, :, 0].numpy(), expected[2:6], rtol=1e-6)


def test_episodes_stop_at_max_ep_len():
    returns, lengths = run_episodes(FeedbackPolicy(), [ToyEnv(), ToyEnv()], [4, 9], 0.0, normalizer(), "window", max_ep_len=5)
    assert lengths == [5, 5]


def test_evaluate_writes_scores_per_target(tmp_path):
    cfg = EvalConfig(env_id="toy", targets=[30.0, 10.0], episodes=3, mode="window", context=4, max_ep_len=20, seed=1)
    result = evaluate(FeedbackPolicy(), normalizer(), cfg, refs=(-50.0, 0.0), make=lambda env_id: ToyEnv(), progress=False)
    assert [r["target"] for r in result["results"]] == [30.0, 10.0]
    first = result["results"][0]
    assert first["lengths"] == [4, 5, 6]  # seeds 1, 2, 3
    np.testing.assert_allclose(first["normalized"], 100 * (np.array(first["returns"]) + 50) / 50)
    assert first["normalized_mean"] == pytest.approx(np.mean(first["normalized"]))
    json.dumps(result)  # JSON-able
    no_refs = evaluate(FeedbackPolicy(), normalizer(), cfg, make=lambda env_id: ToyEnv(), progress=False)
    assert "normalized_mean" not in no_refs["results"][0]
    with pytest.raises(ValueError, match="mode"):
        EvalConfig(env_id="toy", targets=[1.0], mode="sideways")


def test_pendulum_episodes_in_gymnasium():
    pytest.importorskip("gymnasium", reason="the rl extra is not installed")
    norm = Normalizer(np.zeros(3), np.ones(3), np.array([-2.0]), np.array([2.0]), scale=100.0)
    cfg = EvalConfig(env_id="Pendulum-v1", targets=[-150.0], episodes=2, mode="recurrent", max_ep_len=15)
    result = evaluate(FeedbackPolicy(), norm, cfg, refs=(-1200.0, -150.0), progress=False)
    assert result["results"][0]["lengths"] == [15, 15]
    assert all(r < 0 for r in result["results"][0]["returns"])
