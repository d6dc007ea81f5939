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

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from models.data import DataInfo
from models.family import Params
from models.layers import ActivationName, Hidden, mlp_trunk

Baseline = Literal["none", "mean", "value"]
MA_DECAY = 0.9  # moving average of the returns, the ``mean`` baseline
NORM_EPS = 1e-8  # normalize_returns: (G − mean) / (std + ε); one-step batches have std 0


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


class Reinforce(nn.Module):
    """Observations (B, *obs_shape) -> action logits (B, A); a value net when asked."""

    return_mean: Tensor
    return_seen: Tensor

    def __init__(self, params: ReinforceParams, info: DataInfo) -> None:
        super().__init__()
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
