"""The shared RL core (models/rl.py): replay, reward clipping, frame skip, seeded episodes,
termination vs truncation, evaluation and pictures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from models.data import Space, load_data
from models.rl import (
    ActionRepeat,
    Episodes,
    ReplayBuffer,
    clip_reward,
    eval_seed,
    evaluate,
    gif_bytes,
    grid_frame,
    record_episode,
    run_episode,
    train_seed,
)

torch.set_num_threads(1)


class Scripted:
    """A stand-in gymnasium env with scripted rewards: step t gives reward rewards[t] and
    terminates (or truncates) after ``end`` steps."""

    def __init__(self, rewards: list[float], end: int, truncate: bool = False) -> None:
        self.rewards, self.end, self.truncate, self.t = rewards, end, truncate, 0
        self.actions: list[Any] = []

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.actions.append(action)
        r = self.rewards[self.t]
        self.t += 1
        over = self.t >= self.end
        obs = np.full(2, self.t, np.float32)
        return obs, r, over and not self.truncate, over and self.truncate, {}

    def close(self) -> None:
        pass


DISCRETE = Space("discrete", n=2)


def test_replay_samples_uniformly_over_the_filled_part() -> None:
    buf = ReplayBuffer(8, (1,))
    for i in range(4):  # half full: slots 4..7 are empty and must never be drawn
        buf.add(torch.tensor([float(i)]), i, float(i), torch.tensor([i + 1.0]), False)
    g = torch.Generator().manual_seed(0)
    drawn = buf.sample(4000, g)["reward"].long()
    counts = torch.bincount(drawn, minlength=8)
    assert counts[4:].sum() == 0
    assert ((counts[:4].float() / 4000 - 0.25).abs() < 0.03).all()  # 5 sigma is ~0.034


def test_replay_has_no_stale_index_after_wrap_around() -> None:
    buf = ReplayBuffer(5, (1,))
    for i in range(13):  # wraps twice: only the last 5 transitions remain
        buf.add(torch.tensor([float(i)]), i % 2, float(i), torch.tensor([i + 1.0]), i == 12)
    assert len(buf) == 5 and buf.pos == 13 % 5
    batch = buf.sample(500, torch.Generator().manual_seed(1))
    assert set(batch["reward"].long().tolist()) == {8, 9, 10, 11, 12}
    # each sampled transition is whole: obs, next_obs, action and flag of the same step
    assert torch.equal(batch["obs"][:, 0], batch["reward"])
    assert torch.equal(batch["next_obs"][:, 0], batch["reward"] + 1)
    assert torch.equal(batch["action"], batch["reward"].long() % 2)
    assert torch.equal(batch["terminated"], batch["reward"] == 12)
    assert buf.latest(2)["reward"].tolist() == [12.0, 11.0]


def test_replay_state_round_trips_bit_exactly() -> None:
    buf = ReplayBuffer(6, (2, 2), obs_dtype=torch.bool)
    for i in range(9):
        obs = torch.rand(2, 2, generator=torch.Generator().manual_seed(i)) > 0.5
        buf.add(obs, i % 3, i * 0.5, ~obs, i % 4 == 0)
    again = ReplayBuffer(6, (2, 2), obs_dtype=torch.bool)
    again.load_state_dict({k: v.clone() for k, v in buf.state_dict().items()})
    a = buf.sample(32, torch.Generator().manual_seed(5))
    b = again.sample(32, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a) and (again.pos, again.size) == (3, 6)
    assert buf.obs.dtype == torch.bool and a["obs"].dtype == torch.float32


def test_reward_clipping() -> None:
    assert [clip_reward(r, 1.0) for r in (-3.0, -0.5, 0.0, 2.0)] == [-1.0, -0.5, 0.0, 1.0]
    assert clip_reward(7.5, None) == 7.5


def test_frame_skip_sums_rewards_and_clips_for_training_only() -> None:
    env = ActionRepeat(Scripted([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], end=6), DISCRETE, 4, 1.0)
    env.reset(0)
    s = env.step(torch.tensor(1))
    assert (s.reward, s.train_reward, s.frames) == (10.0, 1.0, 4)
    assert env.env.actions == [1, 1, 1, 1]  # the same action, repeated
    assert not s.done and s.obs.tolist() == [4.0, 4.0]


def test_frame_skip_stops_at_termination() -> None:
    env = ActionRepeat(Scripted([1.0, 2.0, 3.0, 4.0], end=3), DISCRETE, 4)
    env.reset(0)
    s = env.step(0)
    assert (s.reward, s.frames, s.terminated, s.truncated) == (6.0, 3, True, False)


def test_truncation_and_termination_are_kept_apart() -> None:
    trunc = ActionRepeat(Scripted([1.0] * 3, end=2, truncate=True), DISCRETE, 1)
    trunc.reset(0)
    assert not trunc.step(0).done
    s = trunc.step(0)
    assert (s.terminated, s.truncated, s.done) == (False, True, True)
    # CartPole at its time limit: truncated, never terminated
    env = ActionRepeat(load_data("cartpole").make(max_episode_steps=3), DISCRETE, 1)
    env.reset(0)
    flags = [(s.terminated, s.truncated) for s in (env.step(i % 2) for i in range(3))]
    assert flags == [(False, False), (False, False), (False, True)]


def lean(obs: torch.Tensor) -> int:
    return int(obs[2] > 0)  # push the way the pole leans


def test_seeded_episodes_repeat_and_evaluation_seeds_are_disjoint() -> None:
    data = load_data("cartpole")

    def returns(seed: int) -> list[tuple[float, int]]:
        eps, out = Episodes(data, seed, frame_skip=2), []
        while len(out) < 3:
            if eps.step(lean(eps.obs)).done:
                out.append(eps.finish())
        return out

    a = returns(3)
    assert a == returns(3) and a != returns(4)
    train = {train_seed(s, i) for s in range(3) for i in range(100)}
    evals = {eval_seed(s, i) for s in range(3) for i in range(100)}
    assert max(train) < 2**31 <= min(evals) and max(evals) < 2**32 and len(train) == 300


@pytest.mark.parametrize(("name", "skip"), [("cartpole", 3), ("minatar_breakout", 1)])
def test_episodes_resume_mid_episode_by_replaying_actions(name: str, skip: int) -> None:
    """A state taken mid-episode (after a budget-limited last repeat) rebuilds the
    environment exactly: the same observations and rewards from there on."""
    data = load_data(name)
    n_actions = data.action.n or 2
    eps = Episodes(data, 7, frame_skip=skip)
    for t in range(40):
        if eps.step(t % n_actions, limit=1 if t == 39 else None).done:
            eps.finish()
    again = Episodes(data, 7, frame_skip=skip)
    again.load_state_dict({k: v.clone() for k, v in eps.state_dict().items()})
    assert torch.equal(again.obs, eps.obs) and again.episode == eps.episode
    assert (again.episode_return, again.episode_length) == (eps.episode_return, eps.episode_length)
    for t in range(30):
        a, b = eps.step(t % n_actions), again.step(t % n_actions)
        assert torch.equal(a.obs, b.obs) and (a.reward, a.done) == (b.reward, b.done)
        if a.done:
            eps.finish(), again.finish()
            assert torch.equal(again.obs, eps.obs)


def test_evaluate_is_deterministic_and_counts_environment_steps() -> None:
    data = load_data("cartpole")

    def policy(obs: torch.Tensor) -> torch.Tensor:
        return (obs[:, 2] > 0).long()

    r1, n1 = evaluate(policy, data, 2, seed=0, frame_skip=2)
    r2, n2 = evaluate(policy, data, 2, seed=0, frame_skip=2)
    assert (r1, n1) == (r2, n2) and r1 == [float(n) for n in n1]  # +1 per env step


def test_evaluate_runs_episodes_side_by_side_as_one_at_a_time() -> None:
    """The batched evaluation gives each episode what it gives alone (run_episode from its
    evaluation seed), and asks the policy once per step of the longest episode, on the
    episodes still running."""
    data = load_data("cartpole")
    batches: list[int] = []

    def policy(obs: torch.Tensor) -> torch.Tensor:
        batches.append(len(obs))
        return (obs[:, 2] > 0).long()

    returns, lengths = evaluate(policy, data, 5, seed=3, frame_skip=2)
    assert len(set(lengths)) > 1, "episodes of different lengths: some finish first"
    assert len(batches) == max(-(-n // 2) for n in lengths)  # agent steps at frame skip 2
    assert batches == sorted(batches, reverse=True) and batches[0] == 5
    env = ActionRepeat(data.make(), data.action, 2)
    try:
        alone = [run_episode(policy, env, eval_seed(3, i)) for i in range(5)]
    finally:
        env.close()
    assert alone == list(zip(returns, lengths, strict=True))


def test_minatar_frames_and_gif() -> None:
    data = load_data("minatar_breakout")
    frames = record_episode(
        lambda obs: torch.zeros(len(obs), dtype=torch.long), data, seed=0, max_frames=5
    )
    assert len(frames) == 5 and frames[0].shape == (160, 160, 3) and frames[0].dtype == np.uint8
    cell = np.zeros((10, 10, 4), bool)
    cell[0, 0, 3] = cell[0, 0, 1] = True  # the highest set channel wins
    assert grid_frame(cell, scale=1)[0, 0].tolist() == [232, 88, 88]
    gif = gif_bytes(frames, fps=10)
    assert gif[:6] == b"GIF89a"


def test_classic_control_frames_render_headless() -> None:
    frames = record_episode(
        lambda obs: torch.zeros(len(obs), 1), load_data("pendulum"), max_frames=2
    )
    assert len(frames) == 2 and frames[0].shape == (500, 500, 3)


def test_frame_skip_must_be_positive() -> None:
    with pytest.raises(ValueError, match="frame_skip"):
        ActionRepeat(Scripted([0.0], 1), DISCRETE, 0)
