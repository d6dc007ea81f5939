"""``reinforce``: the score-function policy gradient (Williams 1992, "Simple statistical
gradient-following algorithms for connectionist reinforcement learning").

A softmax policy π_θ(a|s) over discrete actions is trained on whole episodes by the
notes' stochastic policy gradient (§8) with the score function ∇ log p = ∇p / p:

    ∇_θ J = E[Σ_t ∇_θ log π_θ(a_t|s_t) (G_t − b(s_t))],   G_t = Σ_{k≥t} γ^{k−t} r_k

G_t is the discounted return-to-go (``returns_to_go``); the surrogate whose gradient is
the estimate above is −(1/N) Σ_episodes Σ_t log π(a_t|s_t)(G_t − b) (``policy_loss``).
A baseline b that does not depend on the action leaves the expectation unchanged, since
E_a[∇ log π(a|s)] = Σ_a ∇π(a|s) = ∇1 = 0, and lowers the variance when it tracks G
(``baseline``): ``none``; ``mean``, a moving average of earlier batches' returns (none on
the first batch, so it never depends on the current sample); ``value``, a state-value
network V_ψ(s) fitted to the returns by least squares. ``normalize_returns`` standardises
each batch's returns first (then ``mean`` is about zero, and V fits the standardised
returns). An entropy bonus β H(π(·|s_t)) per step keeps the policy from collapsing early.
``grad_var`` is the variance (trace of the covariance) of the policy gradient estimate
across independent batches of episodes: why a baseline helps.

Checkpoint ``state["model"]`` keys: ``policy.*``, ``value.*`` (``baseline: value``
only), ``return_mean``, ``return_seen`` (the ``mean`` baseline's moving average).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from models import rl
from models.data import DataInfo, Environment
from models.family import Capability, Context, Diverged, Family, Params
from models.layers import ActivationName, Hidden, mlp_trunk
from models.loop import load_served

Baseline = Literal["none", "mean", "value"]
MA_DECAY = 0.9  # moving average of the returns, the ``mean`` baseline
NORM_EPS = 1e-8  # normalize_returns: (G − mean) / (std + ε); one-step batches have std 0
EVAL_SEED = 0  # evaluation episodes: rl.eval_seed(0, i), the same for every job
PROBE_SEED = 1  # grad_var's episodes: rl.eval_seed(1, i), the same at every evaluation
DATASETS = frozenset({"cartpole", "minatar_breakout"})


class ReinforceParams(Params):
    hidden: Hidden = Field(
        default_factory=lambda: [64], description="policy (and value) network widths"
    )
    activation: ActivationName = Field("tanh", description="nonlinearity of both networks")
    gamma: float = Field(0.99, ge=0.0, le=1.0, description="discount factor γ")
    baseline: Baseline = Field(
        "value", description="b in (G − b): none, mean (moving average), value (V(s) by MSE)"
    )
    normalize_returns: bool = Field(True, description="standardise each batch's returns")
    entropy_coef: float = Field(0.0, ge=0.0, le=10.0, description="entropy bonus β per step")
    episodes_per_update: int = Field(
        2, ge=1, le=64, description="episodes in the batch of one gradient step"
    )
    grad_var_samples: int = Field(
        4, ge=0, le=32, description="episode batches for grad_var per evaluation (0: off)"
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


class Reinforce(rl.Agent):
    """Observations (B, *obs_shape) -> action logits (B, A); a value net when asked."""

    return_mean: Tensor
    return_seen: Tensor

    def __init__(self, params: ReinforceParams, info: DataInfo) -> None:
        super().__init__(frame_skip=1)
        if not info.n_classes:
            raise ValueError(f"reinforce needs discrete actions; {info.name} has none")
        self.obs_dim, self.n_actions = math.prod(info.input_shape), info.n_classes
        self.obs_shape = tuple(info.input_shape)
        hidden, act = params.hidden, params.activation
        self.policy = nn.Sequential(
            mlp_trunk(self.obs_dim, hidden, act), nn.Linear(hidden[-1], self.n_actions)
        )
        self.value = (
            nn.Sequential(mlp_trunk(self.obs_dim, hidden, act), nn.Linear(hidden[-1], 1))
            if params.baseline == "value"
            else None
        )
        self.register_buffer("return_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("return_seen", torch.zeros((), dtype=torch.bool))

    def logits(self, obs: Tensor) -> Tensor:
        return self.policy(flat(obs))  # (B, A)

    def values(self, obs: Tensor) -> Tensor:
        assert self.value is not None
        return self.value(flat(obs)).squeeze(-1)  # (B,)


def build(params: ReinforceParams, info: DataInfo) -> Reinforce:
    return Reinforce(params, info)


# --- the estimator: pure functions ---------------------------------------------------------


def returns_to_go(rewards: Tensor, gamma: float) -> Tensor:
    """G_t = r_t + γ G_{t+1} over one episode's rewards (T,), G_T = 0. A truncated
    episode's tail is cut: its last returns miss what would have followed."""
    out = torch.empty_like(rewards)
    g = rewards.new_zeros(())
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


def normalize(returns: Tensor) -> Tensor:
    """(G − mean) / (std + ε) over the batch: one scale of step whatever the rewards'."""
    return (returns - returns.mean()) / (returns.std(unbiased=False) + NORM_EPS)


def policy_loss(log_probs: Tensor, signal: Tensor, n_episodes: int) -> Tensor:
    """−(1/N) Σ_episodes Σ_t log π(a_t|s_t)(G_t − b_t): its gradient is the REINFORCE
    estimate of −∇J on N episodes. ``log_probs`` (T_total,) carry θ's gradient;
    ``signal`` (T_total,) is G − b, a constant."""
    return -(log_probs * signal.detach()).sum() / n_episodes


def entropy(logits: Tensor) -> Tensor:
    """H(π(·|s)) = −Σ_a π(a|s) log π(a|s) per row (B,)."""
    log_p = torch.log_softmax(logits, -1)
    return -(log_p.exp() * log_p).sum(-1)


def learning_signal(
    returns: Tensor, normalize_returns: bool, baseline: Baseline, b: Tensor | None
) -> tuple[Tensor, Tensor]:
    """(G − b, the target a baseline fits): G standardised first when asked; ``b`` is the
    moving average (``mean``) or V(s_t) (``value``), ignored for ``none``."""
    target = normalize(returns) if normalize_returns else returns
    if baseline == "none" or b is None:
        return target, target
    return target - b.detach(), target


def surrogate(
    module: Reinforce,
    obs: Tensor,
    actions: Tensor,
    returns: Tensor,
    n_episodes: int,
    params: ReinforceParams,
) -> dict[str, Tensor]:
    """The batch's losses (``loss`` to minimise: policy − β·entropy + value fit) and what
    is logged; reads the ``mean`` baseline without moving it (``update_mean`` does)."""
    logits = module.logits(obs)  # (T, A)
    log_probs = torch.log_softmax(logits, -1).gather(1, actions.long().view(-1, 1)).squeeze(1)
    b: Tensor | None = None
    v: Tensor | None = None
    if params.baseline == "mean" and bool(module.return_seen):
        b = module.return_mean.to(returns.dtype).expand_as(returns)
    elif params.baseline == "value":
        v = module.values(obs)
        b = v
    signal, target = learning_signal(returns, params.normalize_returns, params.baseline, b)
    pl = policy_loss(log_probs, signal.to(log_probs.dtype), n_episodes)
    ent = entropy(logits)
    loss = pl - params.entropy_coef * ent.sum() / n_episodes
    out = {"policy_loss": pl, "entropy": ent.mean().detach(), "target": target}
    if v is not None:
        vl = (v - target.to(v.dtype)).pow(2).mean()  # least squares on the returns
        out["value_loss"] = vl
        loss = loss + vl
    out["loss"] = loss
    return out


@torch.no_grad()
def update_mean(module: Reinforce, target: Tensor) -> None:
    """The ``mean`` baseline after a batch: the first batch's mean, then a moving average."""
    m = target.double().mean()
    if not bool(module.return_seen):
        module.return_mean.copy_(m)
        module.return_seen.fill_(True)
    else:
        module.return_mean.mul_(MA_DECAY).add_((1 - MA_DECAY) * m)


def flat_grad(loss: Tensor, params: list[nn.Parameter]) -> Tensor:
    """∂loss/∂θ as one float64 vector (the parameters' gradients are left alone)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).flatten()
            for p, g in zip(params, grads, strict=True)
        ]
    ).double()


def trace_variance(grads: list[Tensor]) -> float:
    """tr Cov of gradient vectors (the unbiased variance per coordinate, summed)."""
    return float(torch.stack(grads).var(0).sum())


# --- training ------------------------------------------------------------------------------


@dataclass
class Batch:
    """Finished episodes not yet learnt from, and the one under way."""

    obs: list[Tensor] = field(default_factory=list)  # one (T, *obs_shape) per episode
    actions: list[Tensor] = field(default_factory=list)  # (T,) int64
    rewards: list[Tensor] = field(default_factory=list)  # (T,) float64
    cur_obs: list[Tensor] = field(default_factory=list)
    cur_actions: list[int] = field(default_factory=list)
    cur_rewards: list[float] = field(default_factory=list)

    def record(self, obs: Tensor, action: int, reward: float) -> None:
        self.cur_obs.append(obs)
        self.cur_actions.append(action)
        self.cur_rewards.append(reward)

    def close_episode(self) -> None:
        self.obs.append(torch.stack(self.cur_obs))
        self.actions.append(torch.tensor(self.cur_actions, dtype=torch.int64))
        self.rewards.append(torch.tensor(self.cur_rewards, dtype=torch.float64))
        self.cur_obs, self.cur_actions, self.cur_rewards = [], [], []

    def take(self, gamma: float) -> tuple[Tensor, Tensor, Tensor, int]:
        """(obs, actions, returns-to-go, episodes) of the finished episodes, then empty."""
        out = (
            torch.cat(self.obs),
            torch.cat(self.actions),
            torch.cat([returns_to_go(r, gamma) for r in self.rewards]),
            len(self.obs),
        )
        self.obs, self.actions, self.rewards = [], [], []
        return out

    def state_dict(self, obs_shape: tuple[int, ...], obs_dtype: torch.dtype) -> dict[str, Tensor]:
        """Plain tensors: the finished episodes end to end with their lengths, and the
        episode under way (the last length)."""
        cur = (
            torch.stack(self.cur_obs)
            if self.cur_obs
            else torch.zeros((0, *obs_shape), dtype=obs_dtype)
        )
        cur_actions = torch.tensor(self.cur_actions, dtype=torch.int64)
        cur_rewards = torch.tensor(self.cur_rewards, dtype=torch.float64)
        lengths = [len(a) for a in self.actions] + [len(self.cur_actions)]
        return {
            "obs": torch.cat([*self.obs, cur]),
            "actions": torch.cat([*self.actions, cur_actions]),
            "rewards": torch.cat([*self.rewards, cur_rewards]),
            "lengths": torch.tensor(lengths, dtype=torch.int64),
        }

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> Batch:
        lengths = [int(n) for n in state["lengths"]]
        obs, actions, rewards = (
            list(state[k].split(lengths)) for k in ("obs", "actions", "rewards")
        )
        return cls(
            obs[:-1], actions[:-1], rewards[:-1],
            list(obs[-1].unbind()), actions[-1].tolist(), rewards[-1].tolist(),
        )  # fmt: skip


def sample_action(module: Reinforce, obs: Tensor, generator: torch.Generator) -> int:
    with torch.no_grad():
        probs = torch.softmax(module.logits(obs.unsqueeze(0)), -1).cpu()
    return int(torch.multinomial(probs[0].float(), 1, generator=generator))


def play(
    module: Reinforce, env: rl.ActionRepeat, seed: int, generator: torch.Generator, batch: Batch
) -> None:
    """One whole episode of the stochastic policy from reset(seed), added to ``batch``."""
    obs, dev = env.reset(seed), rl_device(module)
    while True:
        a = sample_action(module, obs.to(dev), generator)
        s = env.step(a)
        batch.record(obs, a, s.train_reward)
        obs = s.obs
        if s.done:
            batch.close_episode()
            return


def policy_grad_variance(
    module: Reinforce, data: Environment, params: ReinforceParams, seed: int
) -> float:
    """tr Cov of the policy gradient estimate across ``grad_var_samples`` independent
    batches of ``episodes_per_update`` episodes (the same episodes at every evaluation)."""
    gen = torch.Generator().manual_seed(seed)
    env = rl.ActionRepeat(data.make(), data.action)
    theta = list(module.policy.parameters())
    dev, e = rl_device(module), params.episodes_per_update
    grads = []
    try:
        with torch.enable_grad():
            for k in range(params.grad_var_samples):
                batch = Batch()
                for j in range(e):
                    play(module, env, rl.eval_seed(PROBE_SEED, k * e + j), gen, batch)
                obs, actions, returns, n = batch.take(params.gamma)
                out = surrogate(module, obs.to(dev), actions.to(dev), returns.to(dev), n, params)
                grads.append(flat_grad(out["policy_loss"], theta))
    finally:
        env.close()
    return trace_variance(grads)


def rl_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def update(
    module: Reinforce, opt: torch.optim.Optimizer, batch: Batch, params: ReinforceParams, step: int
) -> dict[str, float]:
    """One gradient step on the finished episodes of ``batch`` (which it empties)."""
    dev = rl_device(module)
    obs, actions, returns, n = batch.take(params.gamma)
    out = surrogate(module, obs.to(dev), actions.to(dev), returns.to(dev), n, params)
    if not bool(torch.isfinite(out["loss"])):
        raise Diverged(step)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    grads = [p.grad for p in module.policy.parameters() if p.grad is not None]
    grad_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    opt.step()
    if params.baseline == "mean":
        update_mean(module, out["target"])
    m = {k: float(out[k].detach()) for k in ("policy_loss", "entropy", "value_loss") if k in out}
    return m | {"grad_norm": float(grad_norm)}


def evaluation(
    module: Reinforce, data: Environment, params: ReinforceParams, seed: int
) -> dict[str, float]:
    """The greedy policy (argmax π) on fixed evaluation episodes, and ``grad_var``."""
    m = rl.evaluation_metrics(act, module, data, params.eval_episodes, EVAL_SEED)
    if params.grad_var_samples >= 2:
        m["grad_var"] = policy_grad_variance(module, data, params, seed)
    return m


def fit(module: nn.Module, data: Environment, params: ReinforceParams, ctx: Context) -> None:
    """Episodes of the stochastic policy; a gradient step every ``episodes_per_update``.

    As ``models.rl`` describes: ``should_stop`` polled every step, checkpoints every
    ``rl.CHECKPOINT_STEPS``, on a stop and at the end, wherever they fall in an episode
    (the environment comes back by replaying the episode's actions, the batch under way
    is in the checkpoint)."""
    assert isinstance(module, Reinforce)
    total = rl.step_budget(ctx)
    module.to(ctx.device)
    opt = ctx.make_optimizer(module.parameters())
    episodes = rl.Episodes(data, ctx.seed)
    step, batch, best_eval = 0, Batch(), -math.inf
    store = rl.observation_dtype(data)  # MinAtar's frames kept as bool: a byte, not four
    if ctx.resume is not None:
        module.load_state_dict(ctx.resume["model"])
        opt.load_state_dict(ctx.resume["optimizer"])
        step, batch = int(ctx.resume["step"]), Batch.from_state(ctx.resume["batch"])
        episodes.load_state_dict(ctx.resume["episodes"])
        best_eval = float(ctx.resume["best_eval"])
    saved = step  # the step of the last checkpoint (or the one resumed from)

    def state() -> dict[str, Any]:
        return {
            "model": copy.deepcopy(module.state_dict()),
            "optimizer": copy.deepcopy(opt.state_dict()),
            "step": step,
            "episodes": episodes.state_dict(),
            "batch": batch.state_dict(module.obs_shape, store),
            "best_eval": best_eval,
        }

    try:
        module.train()
        while step < total:
            if ctx.should_stop():
                if step > saved:
                    ctx.checkpoint(step, state())
                return
            obs = episodes.obs
            a = sample_action(module, obs.to(ctx.device), ctx.generator)
            s = episodes.step(a, total - step)
            batch.record(obs.to(store), a, s.train_reward)
            before, step = step, step + s.frames
            m: dict[str, float] = {}
            if s.done:
                ret, length = episodes.finish()
                batch.close_episode()
                m |= {"episode_return": ret, "episode_length": float(length)}
                if len(batch.obs) == params.episodes_per_update:
                    m |= update(module, opt, batch, params, step)
            best = False
            if rl.crossed(before, step, params.eval_every) or step == total:
                m |= evaluation(module, data, params, ctx.seed)
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
    load_served(module, ctx)  # finished: leave the module as inference will serve it


# --- inference -----------------------------------------------------------------------------


@torch.no_grad()
def act(module: nn.Module, obs: Tensor) -> dict[str, Tensor]:
    """The greedy action argmax π(a|s) (n,) and the policy's ``probs`` (n, A)."""
    assert isinstance(module, Reinforce)
    probs = torch.softmax(module.logits(obs.to(rl_device(module))), -1)
    return {"actions": probs.argmax(-1), "probs": probs}


FAMILY = Family(
    name="reinforce",
    description="REINFORCE policy gradient: softmax policy, returns-to-go, none/mean/value "
    "baselines, normalised returns, entropy bonus; the gradient's variance logged",
    params=ReinforceParams,
    datasets=DATASETS,
    capabilities={Capability.ACT: act, Capability.ROLLOUT: rl.rollout_with(act)},
    build=build,
    fit=fit,
    default_steps=200_000,
)
