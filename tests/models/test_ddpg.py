"""DDPG's maths: the deterministic policy gradient by the chain rule, the critic's target,
the soft update, the bounded actor and the exploration noise."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from models.checkpoint import dump_state, load_state
from models.data import load_data
from models.data.environments import Environment, Space
from models.ddpg import (
    DDPG,
    FAMILY,
    DDPGParams,
    OUNoise,
    actor_loss,
    critic_loss,
    critic_target,
    explore,
    make_noise,
    soft_update,
)
from models.family import Capability
from tests.support.data import RecordingContext

LOW, HIGH = (-2.0, 0.0), (2.0, 1.0)


def toy_info(obs_dim: int = 3) -> object:
    env = Environment(
        "toy", "Toy-v0", Space("box", (obs_dim,), low=-1.0, high=1.0),
        Space("box", (2,), low=LOW, high=HIGH),
    )  # fmt: skip
    return env.info


def toy(**kw: object) -> DDPG:
    torch.manual_seed(0)
    params = DDPGParams(actor_hidden=[5], critic_hidden=[6], **kw)  # type: ignore[arg-type]
    return DDPG(params, toy_info()).double()  # type: ignore[arg-type]


def test_actor_gradient_is_dq_da_times_da_dtheta() -> None:
    """∇_θ (−mean Q(s, μ_θ(s))) = −(1/B) Σ_i ∂Q/∂a(s_i, μ(s_i)) · ∂μ(s_i)/∂θ, each factor
    computed by autograd on its own, and the Jacobian product written out."""
    model = toy()
    obs = torch.randn(4, 3, dtype=torch.float64)
    theta = list(model.actor.parameters())
    whole = torch.autograd.grad(actor_loss(model, obs), theta)

    a = model.actor(obs).detach().requires_grad_(True)  # (B, A), a leaf
    (dq_da,) = torch.autograd.grad(model.critic(obs, a).sum(), [a])  # (B, A)
    chained = torch.autograd.grad(model.actor(obs), theta, grad_outputs=-dq_da / len(obs))
    for g, c in zip(whole, chained, strict=True):
        assert torch.allclose(g, c, atol=1e-12)

    w = model.actor.head.weight  # the head's weights, by the Jacobian of one state's action
    for i in range(len(obs)):
        jac = torch.autograd.functional.jacobian(
            lambda w_, i=i: torch.func.functional_call(
                model.actor, {"head.weight": w_}, (obs[i : i + 1],)
            )[0],
            w,
        )  # (A, *w.shape): ∂a_k/∂w
        term = torch.einsum("k,k...->...", dq_da[i], jac)
        if i == 0:
            total = term
        else:
            total = total + term
    head_index = [n for n, _ in model.actor.named_parameters()].index("head.weight")
    assert torch.allclose(whole[head_index], -total / len(obs), atol=1e-12)


def test_critic_target_bootstraps_unless_terminated() -> None:
    model = toy()
    next_obs = torch.randn(2, 3, dtype=torch.float64)
    q_next = model.critic_target(next_obs, model.actor_target(next_obs)).detach()
    reward = torch.tensor([1.0, -0.5], dtype=torch.float64)
    y = critic_target(model, reward, next_obs, torch.tensor([False, True]), 0.9)
    assert torch.allclose(y, torch.stack([1.0 + 0.9 * q_next[0], torch.tensor(-0.5).double()]))
    assert not y.requires_grad


def test_critic_loss_is_the_squared_td_error() -> None:
    model = toy()
    obs, act = torch.randn(3, 3, dtype=torch.float64), torch.rand(3, 2, dtype=torch.float64)
    y = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    loss, q = critic_loss(model, obs, act, y)
    assert torch.allclose(loss, ((model.critic(obs, act) - y) ** 2).mean())
    (g,) = torch.autograd.grad(loss, [model.critic.head.bias])
    assert torch.allclose(g, 2 * (q - y).mean().view(1))  # ∂/∂bias of mean (q − y)²


def test_soft_update_by_hand() -> None:
    model = toy(tau=0.3)
    before = {k: v.clone() for k, v in model.critic_target.state_dict().items()}
    with torch.no_grad():
        for p in model.critic.parameters():
            p.add_(1.0)
    online = model.critic.state_dict()
    soft_update(model.critic_target, model.critic, 0.3)
    for k, v in model.critic_target.state_dict().items():
        assert torch.allclose(v, 0.3 * online[k] + 0.7 * before[k], atol=1e-12)
    soft_update(model.critic_target, model.critic, 1.0)
    for k, v in model.critic_target.state_dict().items():
        assert torch.equal(v, online[k])


def test_targets_start_as_copies_and_take_no_gradient() -> None:
    model = toy()
    for online, target in ((model.actor, model.actor_target), (model.critic, model.critic_target)):
        for (k, a), b in zip(
            online.state_dict().items(), target.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), k
        assert not any(p.requires_grad for p in target.parameters())


def test_actions_stay_within_the_bounds() -> None:
    model = toy()
    low, high = torch.tensor(LOW).double(), torch.tensor(HIGH).double()
    assert torch.equal(model.low, low) and torch.equal(model.high, high)
    with torch.no_grad():
        model.actor.head.weight.mul_(1e4)  # saturate tanh
        a = model.actor(100 * torch.randn(256, 3, dtype=torch.float64))
        assert bool(((a >= low) & (a <= high)).all())
        model.actor.head.weight.zero_()
        model.actor.head.bias.zero_()
        assert torch.allclose(model.actor(torch.randn(2, 3).double()), (low + high) / 2)
    centre = ((low + high) / 2).expand(3, 2)
    noisy = explore(model, centre, torch.tensor([10.0, -10.0]))  # far outside: clipped
    assert torch.equal(noisy, torch.stack([high[0], low[1]]).expand(3, 2))
    half = explore(model, centre, torch.tensor([0.5, 0.5]))  # noise in half-range units
    assert torch.allclose(half[0], torch.tensor([1.0, 0.75], dtype=torch.float64))


def test_ou_noise_reverts_to_its_mean() -> None:
    gen = torch.Generator().manual_seed(0)
    ou = OUNoise(3, sigma=0.0, theta=0.15, dt=0.5, generator=gen, mu=1.0)
    ou.x = torch.tensor([5.0, -1.0, 1.0], dtype=torch.float64)
    for n in range(1, 21):
        x = ou()
        expected = 1.0 + (1 - 0.15 * 0.5) ** n * (torch.tensor([5.0, -1.0, 1.0]).double() - 1.0)
        assert torch.allclose(x, expected, atol=1e-12)
    ou.reset()
    assert torch.equal(ou.x, torch.ones(3, dtype=torch.float64))


def test_ou_noise_statistics() -> None:
    """Many independent chains after a long run: mean μ, the stationary variance
    σ² dt / (1 − (1 − θ dt)²), and lag-one correlation 1 − θ dt."""
    sigma, theta, dt, chains = 0.3, 0.15, 1.0, 20_000
    ou = OUNoise(chains, sigma, theta, dt, torch.Generator().manual_seed(1))
    for _ in range(100):  # (1 − θ dt)^100 ≈ 1e-7: stationary
        prev = ou()
    x = ou()
    var = sigma**2 * dt / (1 - (1 - theta * dt) ** 2)
    assert abs(float(x.mean())) < 4 * math.sqrt(var / chains)
    assert abs(float(x.var()) / var - 1) < 0.05
    corr = float(torch.corrcoef(torch.stack([prev, x]))[0, 1])
    assert abs(corr - (1 - theta * dt)) < 0.02


def test_noise_is_seeded_and_resettable() -> None:
    params = DDPGParams(noise="ou", noise_std=0.5, ou_dt=0.1)

    def draws(seed: int) -> Tensor:
        noise = make_noise(params, 2, torch.Generator().manual_seed(seed))
        out = [noise() for _ in range(5)]
        noise.reset()
        return torch.stack([*out, noise()])

    a, b = draws(7), draws(7)
    assert torch.equal(a, b) and not torch.equal(a, draws(8))
    # after reset the walk starts again from μ = 0: one step of σ √dt ε, as the first was
    assert float(a[5].abs().max()) < 4 * 0.5 * math.sqrt(0.1)
    gauss = make_noise(DDPGParams(noise_std=0.2), 50_000, torch.Generator().manual_seed(0))()
    assert abs(float(gauss.std()) - 0.2) < 0.005


# --- the family on Pendulum ------------------------------------------------------------------

SMALL = {
    "actor_hidden": [8], "critic_hidden": [8], "buffer_size": 40, "learning_starts": 10,
    "noise": "ou", "eval_every": 50, "eval_episodes": 1, "actor_lr_scale": 0.5,
}  # fmt: skip


def run(steps: int, resume: dict[str, Any] | None = None, **kw: Any) -> tuple[DDPG, Any]:
    data, params = load_data("pendulum"), DDPGParams(**SMALL)  # type: ignore[arg-type]
    torch.manual_seed(0)
    module = FAMILY.build(params, data.info)
    rng = kw.pop("rng", None)
    ctx = RecordingContext(steps=steps, resume=resume, batch_size=8, **kw)
    if rng is not None:
        ctx.set_rng(rng)  # as the runner restores them with a checkpoint
    FAMILY.fit(module, data, params, ctx)
    assert isinstance(module, DDPG)
    return module, ctx


def test_a_stop_mid_episode_resumes_bit_exactly() -> None:
    """Stopped after 57 steps (inside the first episode, the buffer wrapped, the OU walk
    under way), checkpointed through safetensors and resumed: one run's weights."""
    straight, ctx = run(80)
    _, ctx1 = run(80, stop_after=57)
    (stopped, state, _) = ctx1.checkpoints[-1]
    assert stopped == 57 and len(state["replay"]["reward"]) == 40 and state["noise"].abs().sum() > 0
    resumed, ctx2 = run(80, resume=load_state(dump_state(state)), rng=ctx1.rng[-1], best=ctx1.best)
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(v, w), k  # the served (best) weights
    last, last2 = ctx.checkpoints[-1][1]["model"], ctx2.checkpoints[-1][1]["model"]
    assert all(torch.equal(v, last2[k]) for k, v in last.items())  # the final weights
    assert [h for h in ctx.history if h[0] > 57] == ctx2.history
    assert {"eval_return_mean", "eval_length_mean"} <= ctx.history[0][1].keys()


def test_learning_rates_map_to_the_job_optimizer() -> None:
    """The critic's learning rate is the job's, the actor's that times actor_lr_scale."""
    _, ctx = run(12)
    critic_opt, actor_opt = ctx.optimizers
    assert critic_opt.param_groups[0]["lr"] == 1e-3
    assert actor_opt.param_groups[0]["lr"] == 0.5e-3


def test_act_is_the_bounded_deterministic_policy() -> None:
    module, _ = run(12)
    obs = torch.randn(5, 3)
    out = FAMILY.capability(Capability.ACT)(module, obs)
    assert out.keys() == {"actions"} and out["actions"].shape == (5, 1)
    assert torch.equal(out["actions"], module.actor(obs))
    assert bool((out["actions"].abs() <= 2.0).all())
