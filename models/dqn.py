"""``dqn``: deep Q-learning with experience replay and a target network (Mnih et al. 2015).

Section 8 of the notes: Q*(s, a) = E[r + γ max_a' Q*(s', a')] (Bellman); Q-learning
minimises the squared TD error (y − Q(s, a; w))² with y = r + γ max_a' Q(s', a'; w⁻) held
fixed, gradient −(y − Q) ∇_w Q. Naively it is unstable: the target moves with Q, and
consecutive samples are correlated. The two fixes, each a toggle here so a user can switch
it off and watch the instability come back: experience replay (``replay``: uniform
minibatches from the last ``buffer_size`` transitions; off, each update learns from the
latest ``batch_size`` transitions as they come) and a target network w⁻ (``target_network``;
off, targets come from the online network). Also the paper's reward clipping to [−1, 1]
(``reward_clip``, training only) and frame skip (``frame_skip``, action repeat), the Huber
loss (``loss``), gradient-norm clipping, an ε-greedy schedule, and double DQN (van Hasselt
et al. 2016): the online network picks a', the target network values it.

Bootstrapping: a terminated transition's target is r (no future); a truncated one (a time
limit) bootstraps as any other, since its state still has a value (models/rl.py).

Target updates: every ``target_update`` environment steps, w⁻ ← τ w + (1 − τ) w⁻. τ = 1 is
the paper's hard copy; τ < 1 a soft (Polyak) update at that interval (``target_update`` 1
gives the per-step soft update of Lillicrap et al. 2016). Both always apply together:
neither overrides the other.

Checkpoint ``state["model"]`` keys: ``q.*`` (the online network: ``trunk.*`` and ``head.*``,
``conv.*`` for image observations) and ``target.*`` (the same layout) when
``target_network`` is on.
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from models.data import DataInfo, Environment
from models.family import Capability, Context, Family, Params
from models.layers import Hidden, mlp_trunk
from models.loop import load_served
from models.rl import (
    CHECKPOINT_STEPS,
    Agent,
    Episodes,
    ReplayBuffer,
    evaluate,
    greedy_policy,
    observation_dtype,
    rollout_with,
    step_budget,
)

DATASETS = frozenset({"cartpole", "minatar_breakout"})  # discrete actions


class DQNParams(Params):
    hidden: Hidden = Field(
        default_factory=lambda: [64, 64],
        description="hidden widths of the Q-network's fully connected part (after the conv "
        "layer for image observations)",
    )
    conv_channels: Annotated[int, Field(ge=1, le=256)] = Field(
        16, description="channels of the 3x3 conv layer for image (H, W, C) observations"
    )
    gamma: float = Field(0.99, ge=0.0, le=1.0, description="discount γ")
    buffer_size: int = Field(
        50_000, ge=1, le=1_000_000, description="replay capacity in transitions (preallocated)"
    )
    learning_starts: int = Field(
        1000, ge=0, le=10_000_000, description="environment steps before the first update"
    )
    train_freq: int = Field(4, ge=1, le=10_000, description="agent steps between updates")
    gradient_steps: int = Field(1, ge=1, le=1000, description="gradient steps per update")
    target_update: int = Field(
        1000, ge=1, le=10_000_000, description="environment steps between target updates"
    )
    tau: float = Field(
        1.0, gt=0.0, le=1.0, description="target update w⁻ ← τw + (1−τ)w⁻; 1 is a hard copy"
    )
    loss: Literal["huber", "mse"] = Field(
        "huber", description="TD loss: Huber (δ = 1; Mnih et al. 2015) or ½ δ²"
    )
    double: bool = Field(False, description="double DQN target (van Hasselt et al. 2016)")
    eps_start: float = Field(1.0, ge=0.0, le=1.0, description="ε-greedy: ε at step 0")
    eps_end: float = Field(0.05, ge=0.0, le=1.0, description="ε-greedy: ε after the decay")
    eps_fraction: float = Field(
        0.1, ge=0.0, le=1.0, description="fraction of train.steps over which ε decays linearly"
    )
    max_grad_norm: float | None = Field(
        10.0, gt=0.0, le=1e6, description="clip the gradient's global norm; null: no clipping"
    )
    reward_clip: float | None = Field(
        None, gt=0.0, le=1e6, description="clip training rewards to [−c, c] (paper: 1); null: off"
    )
    frame_skip: int = Field(
        1, ge=1, le=16, description="action repeat: environment steps per action"
    )
    replay: bool = Field(True, description="experience replay; off: learn from the latest batch")
    target_network: bool = Field(True, description="a target network; off: targets from Q itself")
    eval_every: int = Field(
        5000, ge=1, le=10_000_000, description="environment steps between evaluations"
    )
    eval_episodes: int = Field(
        5, ge=1, le=100, description="greedy episodes per evaluation (fixed seeds)"
    )


class QNetwork(nn.Module):
    """Observations (B, *obs_shape) -> Q-values (B, actions): an MLP, or for channels-last
    images (B, H, W, C) a 3x3 conv layer first (the MinAtar network: Young & Tian 2019)."""

    def __init__(self, params: DQNParams, obs_shape: tuple[int, ...], actions: int) -> None:
        super().__init__()
        self.image = len(obs_shape) == 3
        if self.image:
            h, w, c = obs_shape
            self.conv = nn.Sequential(nn.Conv2d(c, params.conv_channels, 3), nn.ReLU())
            in_dim = params.conv_channels * max(h - 2, 1) * max(w - 2, 1)
            if h < 3 or w < 3:
                raise ValueError("image observations of a conv Q-network are at least 3x3")
        else:
            in_dim = math.prod(obs_shape)
        self.trunk = mlp_trunk(in_dim, params.hidden, "relu")
        self.head = nn.Linear(params.hidden[-1], actions)

    def forward(self, obs: Tensor) -> Tensor:
        if self.image:
            obs = self.conv(obs.permute(0, 3, 1, 2))  # (B, H, W, C) -> (B, C', H-2, W-2)
        return self.head(self.trunk(obs.flatten(1)))


class DQN(Agent):
    """The online Q-network ``q`` and, with ``target_network``, its copy ``target``."""

    def __init__(self, params: DQNParams, info: DataInfo) -> None:
        super().__init__(params.frame_skip)
        if info.n_classes is None:
            raise ValueError("dqn needs a discrete action space")
        self.q = QNetwork(params, tuple(info.input_shape), info.n_classes)
        self.target: QNetwork | None = None
        if params.target_network:
            self.target = copy.deepcopy(self.q).requires_grad_(False)


def build(params: DQNParams, info: DataInfo) -> DQN:
    return DQN(params, info)


# --- the maths, as small pure functions --------------------------------------------------


def td_target(
    reward: Tensor,
    terminated: Tensor,
    next_q_target: Tensor,
    gamma: float,
    next_q_online: Tensor | None = None,
) -> Tensor:
    """y = r + γ (1 − terminated) Q⁻(s', a*) with a* = argmax Q⁻(s', ·), or with
    ``next_q_online`` (double DQN) a* = argmax Q(s', ·): (B,). Truncation is no termination."""
    chooser = next_q_target if next_q_online is None else next_q_online
    best = chooser.argmax(-1, keepdim=True)  # (B, 1)
    next_value = next_q_target.gather(-1, best).squeeze(-1)
    return reward + gamma * (~terminated).to(reward.dtype) * next_value


def td_loss(q_sa: Tensor, target: Tensor, kind: str) -> Tensor:
    """Mean TD loss: Huber (δ² / 2 for |δ| ≤ 1, |δ| − ½ beyond: the gradient is clipped to
    ±1) or ½ δ², which equals Huber where |δ| ≤ 1."""
    if kind == "huber":
        return F.smooth_l1_loss(q_sa, target, beta=1.0)
    return 0.5 * F.mse_loss(q_sa, target)


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """w⁻ ← τ w + (1 − τ) w⁻ for every parameter and buffer (τ = 1: a copy)."""
    for t, o in zip(target.state_dict().values(), online.state_dict().values(), strict=True):
        if tau >= 1.0 or not t.is_floating_point():
            t.copy_(o)
        else:
            t.mul_(1.0 - tau).add_(o, alpha=tau)


def epsilon(step: int, total: int, params: DQNParams) -> float:
    """Linear ε from ``eps_start`` to ``eps_end`` over ``eps_fraction`` of the budget."""
    span = params.eps_fraction * total
    if span <= 0 or step >= span:
        return params.eps_end
    return params.eps_start + (params.eps_end - params.eps_start) * step / span


def dqn_loss(module: DQN, batch: dict[str, Tensor], params: DQNParams) -> tuple[Tensor, Tensor]:
    """(TD loss, Q(s, a) of the batch) on one minibatch."""
    q_sa = module.q(batch["obs"]).gather(-1, batch["action"].unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        target_net = module.target if module.target is not None else module.q
        next_online = module.q(batch["next_obs"]) if params.double else None
        y = td_target(
            batch["reward"], batch["terminated"], target_net(batch["next_obs"]), params.gamma,
            next_online,
        )  # fmt: skip
    return td_loss(q_sa, y, params.loss), q_sa


# --- training ----------------------------------------------------------------------------


class _Stats:
    """Training statistics averaged between two logged episodes."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1

    def pop(self) -> dict[str, float]:
        out = {k: v / self.n for k, v in self.sums.items()} if self.n else {}
        self.sums, self.n = {}, 0
        return out


def fit(module: nn.Module, data: Environment, params: DQNParams, ctx: Context) -> None:
    assert isinstance(module, DQN)
    dev, g = ctx.device, ctx.generator
    module.to(dev)
    total = step_budget(ctx)
    n_actions = data.action.n or 0
    opt = ctx.make_optimizer(module.q.parameters())
    buffer = ReplayBuffer(
        params.buffer_size if params.replay else ctx.batch_size,
        data.observation.shape,
        obs_dtype=observation_dtype(data),
        device=dev,
    )
    episodes = Episodes(
        data, ctx.seed, frame_skip=params.frame_skip, reward_clip=params.reward_clip
    )
    c = {
        "steps": 0,
        "agent_steps": 0,
        "updates": 0,
        "last_target": 0,
        "next_eval": params.eval_every,
    }
    best_eval = -math.inf
    if ctx.resume is not None:
        r = ctx.resume
        module.load_state_dict(r["model"])
        opt.load_state_dict(r["optimizer"])
        buffer.load_state_dict(r["replay"])
        episodes.load_state_dict(r["episodes"])
        c = {k: int(v) for k, v in r["counters"].items()}
        best_eval = float(r["best_eval"])

    def state() -> dict[str, Any]:
        # copies: state_dict() aliases live tensors, and the runner may write an offered
        # (best) checkpoint steps later, or score it at the end (ctx.best_model())
        return {
            "model": copy.deepcopy(module.state_dict()),
            "optimizer": copy.deepcopy(opt.state_dict()),
            "replay": buffer.state_dict(),
            "episodes": episodes.state_dict(),
            "counters": dict(c),
            "best_eval": best_eval,
        }

    stats = _Stats()
    last_checkpoint = c["steps"]
    policy = greedy_policy(act, module)
    try:
        while c["steps"] < total:
            if ctx.should_stop():
                break
            steps = c["steps"]
            eps = epsilon(steps, total, params)
            obs = episodes.obs
            if float(torch.rand((), generator=g)) < eps:
                action = int(torch.randint(n_actions, (), generator=g))
            else:
                with torch.no_grad():
                    action = int(module.q(obs.unsqueeze(0).to(dev)).argmax(-1))
            s = episodes.step(action, limit=total - steps)
            buffer.add(obs, action, s.train_reward, s.obs, s.terminated)
            c["steps"] = steps = steps + s.frames
            c["agent_steps"] += 1
            if steps >= params.learning_starts and c["agent_steps"] % params.train_freq == 0:
                module.q.train()
                for _ in range(params.gradient_steps):
                    batch = (
                        buffer.sample(ctx.batch_size, g)
                        if params.replay
                        else buffer.latest(ctx.batch_size)
                    )
                    loss, q_sa = dqn_loss(module, batch, params)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    norm = nn.utils.clip_grad_norm_(
                        module.q.parameters(), params.max_grad_norm or math.inf
                    )  # the pre-clip norm
                    opt.step()
                    c["updates"] += 1
                    stats.add(
                        td_loss=float(loss.detach()),
                        q_mean=float(q_sa.detach().mean()),
                        grad_norm=float(norm),
                    )
            if module.target is not None and steps - c["last_target"] >= params.target_update:
                update_target(module.target, module.q, params.tau)
                c["last_target"] = steps
            if s.done:
                ret, length = episodes.finish()
                ctx.log(
                    steps, episode_return=ret, episode_length=length, epsilon=eps, **stats.pop()
                )
            best = False
            if steps >= c["next_eval"] or steps >= total:
                returns, _ = evaluate(
                    policy, data, params.eval_episodes, frame_skip=params.frame_skip
                )
                mean = sum(returns) / len(returns)
                ctx.log(steps, eval_return_mean=mean)
                best = mean >= best_eval
                best_eval = max(best_eval, mean)
                c["next_eval"] = (steps // params.eval_every + 1) * params.eval_every
            ctx.progress(steps, total)
            if best or steps - last_checkpoint >= CHECKPOINT_STEPS or steps >= total:
                ctx.checkpoint(steps, state(), best=best)
                last_checkpoint = steps
        if c["steps"] > last_checkpoint:  # a stop: the state it resumes from
            ctx.checkpoint(c["steps"], state())
    finally:
        episodes.close()
    load_served(module, ctx)  # leave the module as inference will serve it


# --- capabilities ------------------------------------------------------------------------


@torch.no_grad()
def act(module: nn.Module, observations: Tensor) -> dict[str, Tensor]:
    """Greedy actions and every action's Q-value: {"actions": (n,), "q_values": (n, A)}."""
    assert isinstance(module, DQN)
    q = module.q(observations.to(next(module.parameters()).device))
    return {"actions": q.argmax(-1), "q_values": q}


FAMILY = Family(
    name="dqn",
    description="deep Q-network: replay, target network, reward clipping, frame skip, double DQN",
    params=DQNParams,
    datasets=DATASETS,
    capabilities={Capability.ACT: act, Capability.ROLLOUT: rollout_with(act)},
    build=build,
    fit=fit,
    default_steps=50_000,
    default_batch_size=64,
)
