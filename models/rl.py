"""What every reinforcement-learning family shares: seeded episodes, action repeat and reward
clipping, a preallocated replay buffer, evaluation, episode videos, and the generic ROLLOUT
built on a family's ACT (section 8 of the seed notes; Mnih et al. 2015 for frame skip,
reward clipping and replay). A family module never imports another: what two of them
need lives here.

**Budget.** An RL job counts environment steps (``ctx.steps``; ``train.epochs`` is refused
for these families, ``Family.default_steps``). With a frame skip of k one agent step is k
environment steps: the budget, the logged step numbers and episode lengths all count
environment steps.

**Seeds.** Training episode i of a job seeded s resets with ``train_seed(s, i)``; evaluation
episode j of an evaluation seeded e with ``eval_seed(e, j)``. Training seeds lie in
[0, 2³¹) and evaluation seeds in [2³¹, 2³²) (MinAtar seeds a ``RandomState``, so no seed
reaches 2³²): the two never meet, and a policy is never evaluated on an episode it trained
on. Same job seed, same episodes, same returns.

**Termination and truncation are kept apart**: ``terminated`` (the MDP ended: no future
reward) stops bootstrapping; ``truncated`` (a time limit) does not, since the state still
has a value. The replay buffer stores ``terminated`` only; a truncated transition is an
ordinary one whose next state the episode simply did not reach past.

**Stop and resume.** A gymnasium environment's state cannot be checkpointed generically (a
Box2D or MinAtar simulator holds it in its own objects), but it can be rebuilt: an episode
is a deterministic function of its reset seed and the actions taken (MinAtar's sticky
actions draw from an RNG its reset seeds). So a checkpoint holds ``Episodes.state_dict()``
(the episode index and that episode's actions so far, at most ``max_episode_steps``), and a
resume resets to the episode's seed and replays them. With the networks, optimizer, replay
buffer, counters and the runner's RNG snapshot that is a complete resume point, bit-exact,
at any step, not only at episode boundaries: a family polls ``ctx.should_stop()`` every
agent step and offers a checkpoint every ``CHECKPOINT_STEPS`` environment steps, on a stop
and at the end of the budget (the last action repeats only as often as the budget allows,
so the count ends exactly there).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.data import Environment, Space

# --- seeds ---------------------------------------------------------------------------------

_HALF = 2**31
CHECKPOINT_STEPS = 2000  # environment steps between the checkpoints an RL family offers


def _derive(*words: int) -> int:
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint32)[0]) % _HALF


def train_seed(seed: int, episode: int) -> int:
    """The reset seed of training episode ``episode`` of a job seeded ``seed``: [0, 2³¹)."""
    return _derive(seed, episode, 0)


def eval_seed(seed: int, episode: int) -> int:
    """The reset seed of evaluation episode ``episode``: [2³¹, 2³²), disjoint from training."""
    return _HALF + _derive(seed, episode, 1)


# --- stepping ------------------------------------------------------------------------------


def as_obs(obs: Any) -> Tensor:
    """A gymnasium observation as a float32 tensor of the observation's shape (MinAtar's
    bool frames become 0/1)."""
    return torch.as_tensor(np.asarray(obs, dtype=np.float32))


def env_action(action: Tensor | int | float, space: Space) -> Any:
    """One action as gymnasium takes it: an int for a discrete space, else a float32
    array of the space's shape."""
    if space.type == "discrete":
        return int(action.item() if isinstance(action, Tensor) else action)
    a = action.detach().cpu().numpy() if isinstance(action, Tensor) else np.asarray(action)
    return a.astype(np.float32).reshape(space.shape)


def clip_reward(reward: float, clip: float | None) -> float:
    """Reward clipping to [-c, c] (Mnih et al. 2015 clip to [-1, 1]); None: unclipped."""
    return reward if clip is None else float(min(max(reward, -clip), clip))


@dataclass(frozen=True)
class Step:
    """One agent step: ``reward`` the raw sum over the repeated frames (returns are
    reported in it), ``train_reward`` that sum clipped (what the agent learns from),
    ``frames`` the environment steps it took."""

    obs: Tensor
    reward: float
    train_reward: float
    terminated: bool
    truncated: bool
    frames: int

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


class ActionRepeat:
    """Action repeat (frame skip) and reward clipping around a gymnasium environment.

    ``frame_skip`` k repeats each action k times, summing the rewards, and stops early when
    the episode terminates or is truncated; ``reward_clip`` c clips the summed reward to
    [-c, c] for training only (``Step.reward`` stays raw).
    """

    def __init__(
        self, env: Any, action: Space, frame_skip: int = 1, reward_clip: float | None = None
    ):
        if frame_skip < 1:
            raise ValueError("frame_skip is at least 1")
        self.env, self.action, self.frame_skip, self.reward_clip = (
            env,
            action,
            frame_skip,
            reward_clip,
        )

    def reset(self, seed: int) -> Tensor:
        obs, _ = self.env.reset(seed=seed)
        return as_obs(obs)

    def step(self, action: Tensor | int | float, limit: int | None = None) -> Step:
        """Repeat ``action`` ``frame_skip`` times (at most ``limit``), stopping at the end."""
        a = env_action(action, self.action)
        total, terminated, truncated, frames = 0.0, False, False, 0
        obs: Any = None
        for _ in range(self.frame_skip if limit is None else min(limit, self.frame_skip)):
            obs, reward, terminated, truncated, _ = self.env.step(a)
            total += float(reward)
            frames += 1
            if terminated or truncated:
                break
        return Step(
            as_obs(obs),
            total,
            clip_reward(total, self.reward_clip),
            bool(terminated),
            bool(truncated),
            frames,
        )

    def close(self) -> None:
        self.env.close()


class Episodes:
    """Training episodes of one job, one after another: episode i resets with
    ``train_seed(seed, i)``. ``obs`` is the current observation; ``step`` acts, and at the end
    of an episode ``finish`` reports it and resets to the next one.

    ``state_dict`` is the episode index and the actions taken in it so far (with their
    repeat counts): ``load_state_dict`` resets to that episode's seed and replays them, which
    puts a deterministic environment back in the same state, so a checkpoint anywhere in an
    episode resumes bit-exactly (see the module docstring).
    """

    def __init__(
        self,
        data: Environment,
        seed: int,
        *,
        frame_skip: int = 1,
        reward_clip: float | None = None,
    ) -> None:
        self.env = ActionRepeat(data.make(), data.action, frame_skip, reward_clip)
        self.space, self.seed = data.action, seed
        self._start(0)

    def _start(self, episode: int) -> None:
        self.episode = episode
        self.obs = self.env.reset(train_seed(self.seed, episode))
        self.episode_return, self.episode_length = 0.0, 0
        self._actions: list[Tensor] = []
        self._frames: list[int] = []

    def step(self, action: Tensor | int | float, limit: int | None = None) -> Step:
        """Act (repeated at most ``limit`` times: the last steps of a budget)."""
        s = self.env.step(action, limit)
        self._actions.append(torch.as_tensor(env_action(action, self.space)))
        self._frames.append(s.frames)
        self.obs = s.obs
        self.episode_return += s.reward
        self.episode_length += s.frames
        return s

    def finish(self) -> tuple[float, int]:
        """The (raw return, length in environment steps) of the episode just ended; the next
        episode starts."""
        done = (self.episode_return, self.episode_length)
        self._start(self.episode + 1)
        return done

    def state_dict(self) -> dict[str, Tensor]:
        shape = () if self.space.type == "discrete" else self.space.shape
        dtype = torch.int64 if self.space.type == "discrete" else torch.float32
        actions = (
            torch.stack(self._actions).to(dtype)
            if self._actions
            else torch.zeros((0, *shape), dtype=dtype)
        )
        return {
            "episode": torch.tensor(self.episode),
            "actions": actions,
            "frames": torch.tensor(self._frames, dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self._start(int(state["episode"]))
        for action, frames in zip(state["actions"], state["frames"].tolist(), strict=True):
            s = self.step(action, frames)
            if s.done:
                raise ValueError("replaying the episode's actions ended it: not deterministic")

    def close(self) -> None:
        self.env.close()


def observation_dtype(data: Environment) -> torch.dtype:
    """How a replay buffer stores observations: bool frames as bool (a byte, not four)."""
    env = data.make()
    try:
        return torch.bool if env.observation_space.dtype == np.bool_ else torch.float32
    finally:
        env.close()


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in (before, after]: a count just passed it
    (an agent step of k repeated frames may jump over the multiple itself)."""
    return before // every < after // every


def step_budget(ctx: Any) -> int:
    """The job's budget in environment steps (``ctx.steps``)."""
    if ctx.steps is None:
        raise ValueError("an RL family counts environment steps: give train.steps, not epochs")
    return int(ctx.steps)


# --- replay --------------------------------------------------------------------------------


class ReplayBuffer:
    """Experience replay (Lin 1992; Mnih et al. 2015): a ring of the last ``capacity``
    transitions in preallocated tensors, sampled uniformly.

    Slot ``pos`` is overwritten next; ``size`` slots are filled. Sampling draws indices in
    [0, size) only, so before the ring is full no empty slot is drawn, and after it wraps
    every slot holds one of the last ``capacity`` transitions: no stale index. ``state_dict``
    holds plain tensors (the filled part), so a checkpoint is safetensors and a resume is
    bit-exact.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: Sequence[int],
        *,
        action_shape: Sequence[int] = (),
        action_dtype: torch.dtype = torch.int64,
        obs_dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        if capacity < 1:
            raise ValueError("a replay buffer holds at least one transition")
        self.capacity, self.device = capacity, torch.device(device)
        obs_shape, action_shape = tuple(obs_shape), tuple(action_shape)

        def zeros(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
            return torch.zeros((capacity, *shape), dtype=dtype, device=self.device)

        self.obs = zeros(obs_shape, obs_dtype)
        self.next_obs = zeros(obs_shape, obs_dtype)
        self.action = zeros(action_shape, action_dtype)
        self.reward = zeros((), torch.float32)
        self.terminated = zeros((), torch.bool)
        self.pos, self.size = 0, 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: Tensor,
        action: Tensor | int | float,
        reward: float,
        next_obs: Tensor,
        terminated: bool,
    ) -> None:
        i = self.pos
        self.obs[i] = obs.to(self.device, self.obs.dtype)
        self.next_obs[i] = next_obs.to(self.device, self.next_obs.dtype)
        self.action[i] = torch.as_tensor(action, dtype=self.action.dtype).to(self.device)
        self.reward[i] = float(reward)
        self.terminated[i] = bool(terminated)
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        """``n`` transitions drawn uniformly (with replacement) from the filled slots;
        observations as float32."""
        if self.size == 0:
            raise ValueError("sampling an empty replay buffer")
        idx = torch.randint(self.size, (n,), generator=generator).to(self.device)
        return self.take(idx)

    def latest(self, n: int) -> dict[str, Tensor]:
        """The ``n`` most recent transitions (learning without replay)."""
        k = min(n, self.size)
        idx = (self.pos - 1 - torch.arange(k)) % self.capacity
        return self.take(idx.to(self.device))

    def take(self, idx: Tensor) -> dict[str, Tensor]:
        return {
            "obs": self.obs[idx].float(),
            "action": self.action[idx],
            "reward": self.reward[idx],
            "next_obs": self.next_obs[idx].float(),
            "terminated": self.terminated[idx],
        }

    def state_dict(self) -> dict[str, Tensor]:
        n = self.size
        return {
            "obs": self.obs[:n].clone(),
            "next_obs": self.next_obs[:n].clone(),
            "action": self.action[:n].clone(),
            "reward": self.reward[:n].clone(),
            "terminated": self.terminated[:n].clone(),
            "pos": torch.tensor(self.pos),
            "size": torch.tensor(n),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        n = int(state["size"])
        if n > self.capacity:
            raise ValueError(f"a buffer of {n} transitions does not fit {self.capacity}")
        for key in ("obs", "next_obs", "action", "reward", "terminated"):
            getattr(self, key)[:n] = state[key].to(self.device)
        self.pos, self.size = int(state["pos"]), n


# --- acting, evaluating, recording ---------------------------------------------------------

# ACT: (module, observations (n, *obs_shape) float) -> {"actions": (n,) int64 or (n, *action
# shape) float, plus "q_values" (n, actions) for a value method or "probs" for a stochastic
# policy}; the action is the deterministic (greedy, mean) one
ActFn = Callable[[nn.Module, Tensor], dict[str, Tensor]]


@dataclass(frozen=True)
class RolloutOptions:
    """A ROLLOUT request: ``episodes`` evaluation episodes seeded ``eval_seed(seed, i)``."""

    episodes: int = 1
    seed: int = 0


# ROLLOUT: (module, environment, options) -> {"returns": (episodes,) float, "lengths":
# (episodes,) int64}
RolloutFn = Callable[[nn.Module, Environment, RolloutOptions], dict[str, Tensor]]
Policy = Callable[[Tensor], Tensor]  # observations (n, *obs_shape) -> actions (n, ...)


class Agent(nn.Module):
    """Base of an RL family's module: it carries the frame skip it was trained with, so
    evaluation and the generic rollout act at the same rate."""

    def __init__(self, frame_skip: int = 1) -> None:
        super().__init__()
        self.frame_skip = frame_skip


def _device(module: nn.Module) -> torch.device:
    return next(iter(module.parameters()), torch.empty(0)).device


def eval_mode(module: nn.Module) -> None:
    """``module.eval()`` unless every submodule is in eval mode already: ``eval()`` walks
    and sets each one every time, which per step of an evaluation episode cost DQN a fifth
    of its wall time on CartPole."""
    if any(m.training for m in module.modules()):
        module.eval()


def greedy_policy(act: ActFn, module: nn.Module) -> Policy:
    """The deterministic policy of a module through its family's ACT, in eval mode."""
    device = _device(module)

    @torch.no_grad()
    def policy(obs: Tensor) -> Tensor:
        eval_mode(module)
        return act(module, obs.to(device))["actions"]

    return policy


def run_episode(
    policy: Policy,
    env: ActionRepeat,
    seed: int,
    on_frame: Callable[[Tensor], None] | None = None,
) -> tuple[float, int]:
    """One episode from ``reset(seed)`` under ``policy``: (raw return, environment steps);
    ``on_frame`` sees each observation the agent acts on, and the last."""
    obs = env.reset(seed)
    total, length = 0.0, 0
    if on_frame is not None:
        on_frame(obs)
    while True:
        s = env.step(policy(obs.unsqueeze(0))[0])
        total, length, obs = total + s.reward, length + s.frames, s.obs
        if on_frame is not None:
            on_frame(obs)
        if s.done:
            return total, length


def evaluate(
    policy: Policy,
    data: Environment,
    episodes: int,
    *,
    seed: int = 0,
    frame_skip: int = 1,
) -> tuple[list[float], list[int]]:
    """Returns and lengths of ``episodes`` evaluation episodes (``eval_seed(seed, i)``:
    fixed, never a training episode) under a deterministic ``policy``; raw rewards.

    The episodes run side by side, one environment each: every step the policy acts on the
    observations of the episodes still running in one batch, so an evaluation costs one
    forward pass per step of its longest episode rather than one per step of every episode.
    """
    envs: list[ActionRepeat] = []
    try:
        for _ in range(episodes):
            envs.append(ActionRepeat(data.make(), data.action, frame_skip))
        obs = [env.reset(eval_seed(seed, i)) for i, env in enumerate(envs)]
        returns, lengths = [0.0] * episodes, [0] * episodes
        running = list(range(episodes))
        while running:
            actions = policy(torch.stack([obs[i] for i in running]))
            still = []
            for i, action in zip(running, actions, strict=True):
                s = envs[i].step(action)
                returns[i], lengths[i], obs[i] = returns[i] + s.reward, lengths[i] + s.frames, s.obs
                if not s.done:
                    still.append(i)
            running = still
    finally:
        for env in envs:
            env.close()
    return returns, lengths


def evaluation_metrics(
    act: ActFn, module: nn.Module, data: Environment, episodes: int, seed: int = 0
) -> dict[str, float]:
    """``eval_return_mean``, ``eval_return_std`` and ``eval_length_mean`` of the module's
    greedy policy on ``episodes`` fixed evaluation episodes; the module is left in train
    mode (the policy runs it in eval mode)."""
    returns, lengths = evaluate(greedy_policy(act, module), data, episodes, seed=seed)
    module.train()
    r = torch.tensor(returns, dtype=torch.float64)
    return {
        "eval_return_mean": float(r.mean()),
        "eval_return_std": float(r.std(unbiased=False)),
        "eval_length_mean": float(sum(lengths) / len(lengths)),
    }


def rollout_with(act: ActFn) -> RolloutFn:
    """The ROLLOUT capability of a family from its ACT: greedy episodes at the module's
    frame skip. Every RL family declares ``rollout_with(act)``."""

    def rollout(module: nn.Module, data: Environment, options: RolloutOptions) -> dict[str, Tensor]:
        skip = module.frame_skip if isinstance(module, Agent) else 1
        returns, lengths = evaluate(
            greedy_policy(act, module), data, options.episodes, seed=options.seed, frame_skip=skip
        )
        return {
            "returns": torch.tensor(returns, dtype=torch.float64),
            "lengths": torch.tensor(lengths, dtype=torch.int64),
        }

    return rollout


# a fixed palette for bool-grid frames (MinAtar): black background, one colour per channel
GRID_PALETTE = np.array(
    [
        (0, 0, 0),
        (94, 214, 255),  # channel 0 (Breakout: paddle)
        (255, 209, 92),  # 1 (ball)
        (140, 90, 200),  # 2 (trail)
        (232, 88, 88),  # 3 (bricks)
        (120, 220, 120),
        (240, 240, 240),
        (255, 140, 40),
        (60, 120, 255),
        (200, 200, 90),
        (255, 100, 200),
    ],
    dtype=np.uint8,
)


def grid_frame(obs: Tensor | np.ndarray, scale: int = 16) -> np.ndarray:
    """An RGB frame (H·scale, W·scale, 3) of a channels-last 0/1 grid observation: each cell
    takes the colour of its highest set channel (MinAtar's own ``rgb_array`` needs seaborn)."""
    grid = np.asarray(obs, dtype=bool)
    c = grid.shape[-1]
    if c >= len(GRID_PALETTE):
        raise ValueError(f"a grid of {c} channels has no palette")
    index = np.max(grid * np.arange(1, c + 1).reshape(1, 1, c), axis=2)
    rgb = GRID_PALETTE[index]
    return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


def _is_grid(data: Environment) -> bool:
    obs = data.observation
    return len(obs.shape) == 3 and obs.low == 0.0 and obs.high == 1.0


def record_episode(
    policy: Policy,
    data: Environment,
    *,
    seed: int = 0,
    frame_skip: int = 1,
    max_frames: int = 300,
) -> list[np.ndarray]:
    """The RGB frames (H, W, 3 uint8) of evaluation episode ``eval_seed(seed, 0)``, one per
    agent step and at most ``max_frames`` (the episode stops being recorded there): gymnasium's
    ``rgb_array`` render, or for a bool-grid observation ``grid_frame``."""
    grid = _is_grid(data)
    raw = data.make() if grid else data.make(render_mode="rgb_array")
    env = ActionRepeat(raw, data.action, frame_skip)
    frames: list[np.ndarray] = []

    class _Enough(Exception):
        pass

    def on_frame(obs: Tensor) -> None:
        if len(frames) >= max_frames:
            raise _Enough
        if grid:
            frames.append(grid_frame(obs))
        else:
            frames.append(np.asarray(raw.render(), dtype=np.uint8))

    try:
        run_episode(policy, env, eval_seed(seed, 0), on_frame)
    except _Enough:
        pass
    finally:
        env.close()
    return frames


def gif_bytes(
    frames: Sequence[np.ndarray], fps: float = 30.0, max_width: int | None = None
) -> bytes:
    """An animated GIF of RGB frames, looping, at ``fps`` (pillow); frames wider than
    ``max_width`` are subsampled by a whole stride (GIF encoding time grows with pixels)."""
    from PIL import Image

    if not frames:
        raise ValueError("a GIF needs at least one frame")
    width = frames[0].shape[1]
    stride = 1 if max_width is None else max(1, math.ceil(width / max_width))
    images = [Image.fromarray(np.asarray(f[::stride, ::stride], dtype=np.uint8)) for f in frames]
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000 / fps)),
        loop=0,
    )
    return buf.getvalue()
