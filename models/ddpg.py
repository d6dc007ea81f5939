"""``ddpg``: deep deterministic policy gradient (Lillicrap et al. 2016, "Continuous control
with deep reinforcement learning"; Silver et al. 2014 for the gradient).

A deterministic actor a = μ_θ(s) and a critic Q_w(s, a) for continuous actions. The
critic minimises the squared TD error against slowly moving target networks μ', Q'
(the notes' second fix for Q-learning, §8), bootstrapping on truncation but not on
termination:

    y = r + γ (1 − terminated) Q'(s', μ'(s')),    L(w) = mean (Q_w(s, a) − y)²

and the actor ascends the critic by the deterministic policy gradient, the notes'
∂Q/∂a · ∂a/∂w (the notes label the two policy gradients the other way round):

    ∇_θ J = E_s[∇_a Q_w(s, a)|_{a = μ_θ(s)} ∇_θ μ_θ(s)],   the gradient of −mean Q(s, μ_θ(s))

Target networks follow by Polyak averaging θ' ← τ θ + (1 − τ) θ' after every gradient
step (``soft_update``). The actor's last layer is tanh scaled to the action bounds,
μ(s) = c + h ⊙ tanh(u) with centre c = (high + low)/2 and half-range h = (high − low)/2,
so it can never leave them. Exploration adds noise in units of h, then clips to the
bounds: ``gaussian`` N(0, σ²) each step, or ``ou``, an Ornstein-Uhlenbeck process
(Uhlenbeck & Ornstein 1930; the paper's choice) x ← x + θ(μ − x) dt + σ √dt ε, reset to
μ = 0 at each episode's start: correlated in time, as a physical system's momentum.

Checkpoint ``state["model"]`` keys: ``actor.*``, ``critic.*``, ``actor_target.*``,
``critic_target.*`` (each actor with its ``centre``, ``half_range`` buffers).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from models import rl
from models.data import DataInfo, Environment
from models.family import Capability, Context, Diverged, Family, Params
from models.layers import ActivationName, Hidden, mlp_trunk
from models.loop import load_served

DATASETS = frozenset({"pendulum", "mountaincar_continuous"})
EVAL_SEED = 0  # evaluation episodes: rl.eval_seed(0, i), the same for every job
METRICS = ("critic_loss", "actor_loss", "mean_q")  # averaged over the updates between logs


class DDPGParams(Params):
    actor_hidden: Hidden = Field(
        default_factory=lambda: [400, 300], description="actor network widths"
    )
    critic_hidden: Hidden = Field(
        default_factory=lambda: [400, 300], description="critic network widths (on [s, a])"
    )
    activation: ActivationName = Field("relu", description="nonlinearity of both networks")
    gamma: float = Field(0.98, ge=0.0, le=1.0, description="discount factor γ")
    tau: float = Field(
        0.005, gt=0.0, le=1.0, description="Polyak step of the target networks (1: copy)"
    )
    noise: Literal["gaussian", "ou"] = Field(
        "gaussian", description="exploration noise: gaussian, or ou (Ornstein-Uhlenbeck)"
    )
    noise_std: float = Field(
        0.1, ge=0.0, le=10.0, description="σ of the noise, in units of half the action range"
    )
    ou_theta: float = Field(0.15, gt=0.0, le=100.0, description="ou: mean reversion rate θ")
    ou_dt: float = Field(0.01, gt=0.0, le=1.0, description="ou: time step dt")
    buffer_size: int = Field(
        200_000, ge=1, le=1_000_000, description="replay buffer capacity (transitions)"
    )
    learning_starts: int = Field(
        10_000, ge=0, le=10_000_000, description="environment steps of random actions first"
    )
    train_freq: int = Field(1, ge=1, le=1000, description="environment steps between updates")
    gradient_steps: int = Field(1, ge=1, le=1000, description="gradient steps per update")
    actor_lr_scale: float = Field(
        1.0, gt=0.0, le=100.0, description="actor's learning rate ÷ the job's (the critic's)"
    )
    eval_every: int = Field(
        5000, ge=1, le=10_000_000, description="environment steps between evaluations"
    )
    eval_episodes: int = Field(5, ge=1, le=100, description="episodes of each evaluation")


# --- networks ------------------------------------------------------------------------------


def flat(obs: Tensor) -> Tensor:
    """Observations (B, *obs_shape) as float rows (B, D) (MinAtar's are booleans)."""
    x = obs.reshape(len(obs), -1)
    return x if x.is_floating_point() else x.float()


def _bounds(info: DataInfo) -> tuple[Tensor, Tensor]:
    """The action space's (low, high) per dimension, from the environment's description."""
    action = info.extra.get("action") or {}
    if action.get("type") != "box":
        raise ValueError(f"ddpg needs continuous actions; {info.name} has none")
    dim = info.target_dim

    def per_dim(v: Any) -> list[float]:
        values = [float(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
        return values * dim if len(values) == 1 else values

    low, high = per_dim(action["low"]), per_dim(action["high"])
    if not all(
        math.isfinite(lo) and math.isfinite(hi) and hi > lo
        for lo, hi in zip(low, high, strict=True)
    ):
        raise ValueError(f"ddpg needs finite action bounds; {info.name}'s are {low}, {high}")
    return torch.tensor(low), torch.tensor(high)


class Actor(nn.Module):
    """Observations (B, *obs_shape) -> actions (B, A) within [low, high]."""

    centre: Tensor
    half_range: Tensor

    def __init__(
        self, obs_dim: int, low: Tensor, high: Tensor, hidden: list[int], act: str
    ) -> None:
        super().__init__()
        self.trunk = mlp_trunk(obs_dim, hidden, act)
        self.head = nn.Linear(hidden[-1], len(low))
        self.register_buffer("centre", (high + low) / 2)
        self.register_buffer("half_range", (high - low) / 2)

    def forward(self, obs: Tensor) -> Tensor:
        u = self.head(self.trunk(flat(obs)))
        return self.centre + self.half_range * torch.tanh(u)


class Critic(nn.Module):
    """(observations (B, *obs_shape), actions (B, A)) -> Q(s, a) (B,)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: list[int], act: str) -> None:
        super().__init__()
        self.trunk = mlp_trunk(obs_dim + action_dim, hidden, act)
        self.head = nn.Linear(hidden[-1], 1)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        x = flat(obs)
        return self.head(self.trunk(torch.cat([x, action.to(x.dtype)], -1))).squeeze(-1)


class DDPG(rl.Agent):
    def __init__(self, params: DDPGParams, info: DataInfo) -> None:
        super().__init__(frame_skip=1)
        low, high = _bounds(info)
        obs_dim, act = math.prod(info.input_shape), params.activation
        self.actor = Actor(obs_dim, low, high, params.actor_hidden, act)
        self.critic = Critic(obs_dim, len(low), params.critic_hidden, act)
        self.actor_target = Actor(obs_dim, low, high, params.actor_hidden, act)
        self.critic_target = Critic(obs_dim, len(low), params.critic_hidden, act)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor_target.requires_grad_(False)
        self.critic_target.requires_grad_(False)

    @property
    def low(self) -> Tensor:
        return self.actor.centre - self.actor.half_range

    @property
    def high(self) -> Tensor:
        return self.actor.centre + self.actor.half_range


def build(params: DDPGParams, info: DataInfo) -> DDPG:
    return DDPG(params, info)


# --- losses and updates: pure functions ----------------------------------------------------


def critic_target(
    model: DDPG, reward: Tensor, next_obs: Tensor, terminated: Tensor, gamma: float
) -> Tensor:
    """y = r + γ (1 − terminated) Q'(s', μ'(s')) (B,), from the target networks, no gradient."""
    with torch.no_grad():
        q_next = model.critic_target(next_obs, model.actor_target(next_obs))
        return reward + gamma * (1.0 - terminated.float()) * q_next


def critic_loss(model: DDPG, obs: Tensor, action: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(mean (Q(s, a) − y)², Q(s, a) (B,)): the squared TD error of the notes, §8."""
    q = model.critic(obs, action)
    return (q - y).pow(2).mean(), q


def actor_loss(model: DDPG, obs: Tensor) -> Tensor:
    """−mean Q(s, μ(s)): its gradient in θ is −∂Q/∂a · ∂μ/∂θ (the critic's weights also
    receive a gradient here; only the actor's optimizer steps on it)."""
    return -model.critic(obs, model.actor(obs)).mean()


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ' ← τ θ + (1 − τ) θ' for every parameter (τ = 1 copies); buffers are copied."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(1.0 - tau).add_(o, alpha=tau)
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        tb.copy_(ob)


def clip_action(action: Tensor, low: Tensor, high: Tensor) -> Tensor:
    return torch.maximum(torch.minimum(action, high), low)


class GaussianNoise:
    """Independent N(0, σ²) per step and dimension (``reset`` does nothing)."""

    def __init__(self, dim: int, sigma: float, generator: torch.Generator) -> None:
        self.dim, self.sigma, self.generator = dim, sigma, generator

    def reset(self) -> None:
        pass

    def __call__(self) -> Tensor:
        return self.sigma * torch.randn(self.dim, generator=self.generator, dtype=torch.float64)


class OUNoise:
    """Ornstein-Uhlenbeck: x ← x + θ(μ − x) dt + σ √dt ε, ε ~ N(0, I), from x = μ at
    ``reset``. Its stationary variance is σ² dt / (1 − (1 − θ dt)²) ≈ σ²/(2θ)."""

    def __init__(
        self,
        dim: int,
        sigma: float,
        theta: float,
        dt: float,
        generator: torch.Generator,
        mu: float = 0.0,
    ) -> None:
        self.sigma, self.theta, self.dt, self.mu = sigma, theta, dt, mu
        self.generator = generator
        self.x = torch.full((dim,), mu, dtype=torch.float64)

    def reset(self) -> None:
        self.x.fill_(self.mu)

    def __call__(self) -> Tensor:
        eps = torch.randn(self.x.shape, generator=self.generator, dtype=torch.float64)
        drift = self.theta * (self.mu - self.x) * self.dt
        self.x = self.x + drift + self.sigma * math.sqrt(self.dt) * eps
        return self.x.clone()


Noise = GaussianNoise | OUNoise


def make_noise(params: DDPGParams, dim: int, generator: torch.Generator) -> Noise:
    if params.noise == "ou":
        return OUNoise(dim, params.noise_std, params.ou_theta, params.ou_dt, generator)
    return GaussianNoise(dim, params.noise_std, generator)


def explore(model: DDPG, action: Tensor, noise: Tensor) -> Tensor:
    """The behaviour action: μ(s) plus noise in units of the half-range, clipped to the bounds."""
    noisy = action + noise.to(action) * model.actor.half_range
    return clip_action(noisy, model.low, model.high)


# --- training ------------------------------------------------------------------------------


def train_step(
    model: DDPG,
    critic_opt: torch.optim.Optimizer,
    actor_opt: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    params: DDPGParams,
    step: int,
) -> Tensor:
    """One critic step, one actor step, then both targets' Polyak step; returns the
    (critic loss, actor loss, mean Q) of the batch as a float64 (3,) tensor."""
    y = critic_target(model, batch["reward"], batch["next_obs"], batch["terminated"], params.gamma)
    c_loss, q = critic_loss(model, batch["obs"], batch["action"], y)
    if not bool(torch.isfinite(c_loss)):
        raise Diverged(step)
    critic_opt.zero_grad(set_to_none=True)
    c_loss.backward()
    critic_opt.step()
    model.critic.requires_grad_(False)  # the actor's step moves θ only: no gradient for w
    try:
        a_loss = actor_loss(model, batch["obs"])
        actor_opt.zero_grad(set_to_none=True)
        a_loss.backward()
        actor_opt.step()
    finally:
        model.critic.requires_grad_(True)
    soft_update(model.critic_target, model.critic, params.tau)
    soft_update(model.actor_target, model.actor, params.tau)
    return torch.stack([c_loss.detach(), a_loss.detach(), q.detach().mean()]).double()


def behaviour(
    model: DDPG, obs: Tensor, step: int, noise: Noise, params: DDPGParams, gen: torch.Generator
) -> Tensor:
    """The action taken: uniform over the bounds before ``learning_starts``, then μ(s)
    plus exploration noise, clipped (A,)."""
    if step < params.learning_starts:
        u = torch.rand(model.low.shape, generator=gen, dtype=torch.float64).to(model.low)
        return model.low + u * (model.high - model.low)
    with torch.no_grad():
        return explore(model, model.actor(obs.unsqueeze(0).to(model.low.device))[0], noise())


def evaluation(model: DDPG, data: Environment, params: DDPGParams) -> dict[str, float]:
    """The deterministic policy μ(s) on fixed evaluation episodes."""
    return rl.evaluation_metrics(act, model, data, params.eval_episodes, EVAL_SEED)


def fit(module: nn.Module, data: Environment, params: DDPGParams, ctx: Context) -> None:
    """Off-policy training from a replay buffer (``models.rl.ReplayBuffer``), with
    ``gradient_steps`` updates every ``train_freq`` environment steps after
    ``learning_starts``. Learning rates: the critic's is the job's ``optimizer.lr``, the
    actor's that times ``actor_lr_scale`` (two optimizers of the job's rule).

    Checkpoints fall at episode ends (on a stop, after an evaluation) and at the end of
    the budget; one taken mid-episode holds that episode's actions (and the OU noise's
    state), replayed from its seeded reset on resume to bring the environment back."""
    assert isinstance(module, DDPG)
    model, dev, total = module, ctx.device, rl.step_budget(ctx)
    model.to(dev)
    critic_opt = ctx.make_optimizer(model.critic.parameters())
    actor_opt = ctx.make_optimizer(model.actor.parameters())
    for group in actor_opt.param_groups:
        group["lr"] *= params.actor_lr_scale
    n_act = len(model.low)
    buffer = rl.ReplayBuffer(
        params.buffer_size, data.info.input_shape, action_shape=(n_act,),
        action_dtype=torch.float32, obs_dtype=rl.observation_dtype(data), device=dev,
    )  # fmt: skip
    noise = make_noise(params, n_act, ctx.generator)
    episodes = rl.Episodes(data, ctx.seed)
    step, updates, best_eval = 0, 0, -math.inf
    sums = torch.zeros(len(METRICS), dtype=torch.float64, device=dev)
    resume = ctx.resume
    if resume is not None:
        model.load_state_dict(resume["model"])
        critic_opt.load_state_dict(resume["critic_optimizer"])
        actor_opt.load_state_dict(resume["actor_optimizer"])
        buffer.load_state_dict(resume["replay"])
        episodes.load_state_dict(resume["episodes"])
        step, updates, sums = int(resume["step"]), int(resume["updates"]), resume["sums"].to(dev)
        best_eval = float(resume["best_eval"])
        if isinstance(noise, OUNoise):
            noise.x = resume["noise"].clone()
    saved = step  # the step of the last checkpoint (or the one resumed from)

    def state() -> dict[str, Any]:
        return {
            "model": copy.deepcopy(model.state_dict()),
            "critic_optimizer": copy.deepcopy(critic_opt.state_dict()),
            "actor_optimizer": copy.deepcopy(actor_opt.state_dict()),
            "replay": buffer.state_dict(),
            "episodes": episodes.state_dict(),
            "step": step,
            "updates": updates,
            "sums": sums.clone(),
            "noise": noise.x.clone() if isinstance(noise, OUNoise) else torch.zeros(0),
            "best_eval": best_eval,
        }

    try:
        model.train()
        while step < total:
            if ctx.should_stop():
                if step > saved:
                    ctx.checkpoint(step, state())
                return
            obs = episodes.obs
            a = behaviour(model, obs, step, noise, params, ctx.generator)
            s = episodes.step(a, total - step)
            buffer.add(obs, a, s.train_reward, s.obs, s.terminated)
            before, step = step, step + s.frames
            if step >= params.learning_starts and rl.crossed(before, step, params.train_freq):
                for _ in range(params.gradient_steps):
                    batch = buffer.sample(ctx.batch_size, ctx.generator)
                    sums += train_step(model, critic_opt, actor_opt, batch, params, step)
                    updates += 1
            m: dict[str, float] = {}
            if s.done:
                ret, length = episodes.finish()
                noise.reset()
                m |= {"episode_return": ret, "episode_length": float(length)}
                if updates:
                    m |= dict(zip(METRICS, (sums / updates).tolist(), strict=True))
                    sums.zero_()
                    updates = 0
            best = False
            if rl.crossed(before, step, params.eval_every) or step == total:
                m |= evaluation(model, data, params)
                best = m["eval_return_mean"] >= best_eval  # ties: the later, more trained
                best_eval = max(best_eval, m["eval_return_mean"])
            if m:
                ctx.log(step, **m)
                ctx.progress(step, total)
            if best or rl.crossed(before, step, rl.CHECKPOINT_STEPS) or step == total:
                ctx.checkpoint(step, state(), best=best)
                saved = step
    finally:
        episodes.close()
    load_served(model, ctx)  # finished: leave the module as inference will serve it


# --- inference -----------------------------------------------------------------------------


@torch.no_grad()
def act(module: nn.Module, obs: Tensor) -> dict[str, Tensor]:
    """The deterministic action μ(s) (n, A), within the bounds."""
    assert isinstance(module, DDPG)
    return {"actions": module.actor(obs.to(module.low.device))}


FAMILY = Family(
    name="ddpg",
    description="deep deterministic policy gradient: tanh-bounded actor, critic, Polyak "
    "target networks, Gaussian or Ornstein-Uhlenbeck exploration, replay",
    params=DDPGParams,
    datasets=DATASETS,
    capabilities={Capability.ACT: act, Capability.ROLLOUT: rl.rollout_with(act)},
    build=build,
    fit=fit,
    default_steps=20_000,
    default_batch_size=256,
)
