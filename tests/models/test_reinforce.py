"""REINFORCE's maths on a two-armed bandit, where the policy gradient is known in closed form.

A softmax policy on logits θ has ∇_θ log π(a) = onehot(a) − π, so one pull of arm a with
reward r_a gives the estimate −(onehot(a) − π)(r_a − b) of −∇J, whose expectation over
a ~ π is −π₁π₂(r₁ − r₂)(1, −1) for any b that does not depend on a.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from models.checkpoint import dump_state, load_state
from models.data import load_data
from models.data.environments import Environment, Space
from models.family import Capability
from models.reinforce import (
    FAMILY,
    Reinforce,
    ReinforceParams,
    entropy,
    learning_signal,
    normalize,
    returns_to_go,
    surrogate,
    trace_variance,
    update_mean,
)
from tests.support.data import RecordingContext

THETA = torch.tensor([0.3, -0.4], dtype=torch.float64)
REWARDS = torch.tensor([5.0, 6.0], dtype=torch.float64)  # an offset a baseline can remove


def bandit_info(n_actions: int = 2) -> object:
    env = Environment(
        "bandit", "Bandit-v0", Space("box", (1,), low=0.0, high=0.0), Space("discrete", n=n_actions)
    )
    return env.info


class Logits(nn.Module):
    """A policy whose logits are the parameter θ whatever the state."""

    def __init__(self, theta: Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.theta.expand(len(x), -1)


def bandit(baseline: str = "none", **kw: object) -> tuple[Reinforce, ReinforceParams]:
    params = ReinforceParams(
        hidden=[4],
        baseline=baseline,
        normalize_returns=False,
        **kw,  # type: ignore[arg-type]
    )
    module = Reinforce(params, bandit_info()).double()  # type: ignore[arg-type]
    module.policy = Logits(THETA)
    return module, params


def pull_gradient(module: Reinforce, params: ReinforceParams, arm: int) -> Tensor:
    """∂loss/∂θ of one single-pull episode of ``arm``."""
    out = surrogate(
        module,
        torch.zeros(1, 1, dtype=torch.float64),
        torch.tensor([arm]),
        REWARDS[arm : arm + 1],
        1,
        params,
    )
    (g,) = torch.autograd.grad(out["policy_loss"], [module.policy.theta])
    return g


def exact_moments(module: Reinforce, params: ReinforceParams) -> tuple[Tensor, float]:
    """E_a~π[g(a)] and tr Cov of the one-pull estimate, by enumerating the arms."""
    pi = torch.softmax(THETA, 0)
    grads = torch.stack([pull_gradient(module, params, a) for a in range(2)])
    mean = (pi[:, None] * grads).sum(0)
    var = float((pi[:, None] * (grads - mean).pow(2)).sum())
    return mean, var


def test_one_pull_gradient_is_the_score_function_times_the_reward() -> None:
    module, params = bandit()
    pi = torch.softmax(THETA, 0)
    for arm in range(2):
        onehot = torch.nn.functional.one_hot(torch.tensor(arm), 2).double()
        hand = -(onehot - pi) * REWARDS[arm]
        assert torch.allclose(pull_gradient(module, params, arm), hand, atol=1e-12)


def test_expected_gradient_is_the_true_gradient() -> None:
    module, params = bandit()
    pi1, pi2 = torch.softmax(THETA, 0).tolist()
    mean, _ = exact_moments(module, params)
    hand = -pi1 * pi2 * (REWARDS[0] - REWARDS[1]) * torch.tensor([1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(mean, hand, atol=1e-12)
    theta = THETA.clone().requires_grad_(True)  # −∇J by autograd on J = Σ π(a) r_a
    (true,) = torch.autograd.grad(-(torch.softmax(theta, 0) * REWARDS).sum(), [theta])
    assert torch.allclose(mean, true, atol=1e-12)


def test_mean_baseline_keeps_the_expectation_and_lowers_the_variance() -> None:
    plain, params = bandit()
    mean0, var0 = exact_moments(plain, params)
    module, params_b = bandit("mean")
    expected_reward = float((torch.softmax(THETA, 0) * REWARDS).sum())
    for b in (expected_reward, -3.0, 11.0):  # any b independent of the arm: same expectation
        module.return_mean.fill_(b)
        module.return_seen.fill_(True)
        mean_b, var_b = exact_moments(module, params_b)
        assert torch.allclose(mean_b, mean0, atol=1e-12)
    module.return_mean.fill_(expected_reward)
    _, var_b = exact_moments(module, params_b)
    assert var_b < var0 / 50  # the offset of 5 was nearly all of the variance


def test_mean_baseline_is_off_on_the_first_batch_then_a_moving_average() -> None:
    module, params = bandit("mean")
    first = pull_gradient(module, params, 0)
    assert torch.allclose(first, pull_gradient(bandit()[0], params, 0))  # b = 0
    update_mean(module, torch.tensor([2.0, 4.0]))
    assert float(module.return_mean) == 3.0 and bool(module.return_seen)
    update_mean(module, torch.tensor([13.0]))
    assert math.isclose(float(module.return_mean), 0.9 * 3.0 + 0.1 * 13.0)


def test_sampled_batches_agree_with_the_exact_moments() -> None:
    """Averaging the surrogate over N pulls is the mean of N one-pull estimates."""
    module, params = bandit()
    gen = torch.Generator().manual_seed(0)
    pi = torch.softmax(THETA, 0)
    n, batches = 4, []
    for _ in range(400):
        arms = torch.multinomial(pi, n, replacement=True, generator=gen)
        out = surrogate(
            module, torch.zeros(n, 1, dtype=torch.float64), arms, REWARDS[arms], n, params
        )
        (g,) = torch.autograd.grad(out["policy_loss"], [module.policy.theta])
        singles = torch.stack([pull_gradient(module, params, int(a)) for a in arms]).mean(0)
        assert torch.allclose(g, singles, atol=1e-12)
        batches.append(g)
    mean, var = exact_moments(module, params)
    sampled = torch.stack(batches)
    assert torch.allclose(sampled.mean(0), mean, atol=4 * math.sqrt(var / n / 400))
    assert 0.7 < trace_variance(batches) / (var / n) < 1.3


def test_returns_to_go_by_hand() -> None:
    g = returns_to_go(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 0.5)
    assert g.tolist() == [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]
    assert returns_to_go(torch.ones(4), 1.0).tolist() == [4.0, 3.0, 2.0, 1.0]


def test_normalize_and_the_learning_signal() -> None:
    g = torch.tensor([1.0, 2.0, 6.0], dtype=torch.float64)
    z = normalize(g)
    assert math.isclose(float(z.mean()), 0.0, abs_tol=1e-12)
    assert math.isclose(float(z.std(unbiased=False)), 1.0, rel_tol=1e-6)
    v = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    signal, target = learning_signal(g, True, "value", v)
    assert torch.equal(target, z) and torch.allclose(signal, z - 0.5)
    signal, target = learning_signal(g, False, "none", v)
    assert torch.equal(signal, g) and torch.equal(target, g)


def test_value_baseline_fits_the_returns_and_stays_out_of_the_policy_gradient() -> None:
    torch.manual_seed(0)
    params = ReinforceParams(hidden=[4], baseline="value", normalize_returns=False)
    module = Reinforce(params, bandit_info(3)).double()  # type: ignore[arg-type]
    obs = torch.randn(5, 1, dtype=torch.float64)
    actions, returns = torch.tensor([0, 2, 1, 1, 0]), torch.randn(5, dtype=torch.float64)
    out = surrogate(module, obs, actions, returns, 2, params)
    v = module.values(obs).detach()
    assert torch.allclose(out["value_loss"], (v - returns).pow(2).mean())
    policy_params = list(module.policy.parameters())
    got = torch.autograd.grad(out["loss"], policy_params, retain_graph=True)
    log_p = torch.log_softmax(module.logits(obs), -1)[torch.arange(5), actions]
    hand = torch.autograd.grad(-(log_p * (returns - v)).sum() / 2, policy_params)
    assert all(torch.allclose(a, b) for a, b in zip(got, hand, strict=True))
    value_params = list(module.value.parameters())  # type: ignore[union-attr]
    got_v = torch.autograd.grad(out["loss"], value_params, retain_graph=True)
    hand_v = torch.autograd.grad(out["value_loss"], value_params)
    assert all(torch.allclose(a, b) for a, b in zip(got_v, hand_v, strict=True))


def test_entropy_bonus() -> None:
    assert math.isclose(float(entropy(torch.zeros(1, 4))[0]), math.log(4), rel_tol=1e-6)
    module, params = bandit(entropy_coef=1.0)
    out = surrogate(module, torch.zeros(1, 1, dtype=torch.float64), torch.tensor([0]),
                    torch.zeros(1, dtype=torch.float64), 1, params)  # fmt: skip
    (g,) = torch.autograd.grad(out["loss"], [module.policy.theta])
    theta = THETA.clone().requires_grad_(True)
    (hand,) = torch.autograd.grad(-entropy(theta[None])[0], [theta])
    assert torch.allclose(g, hand)
    assert float(g[0]) > 0 > float(g[1])  # descending it raises the smaller logit: towards uniform


# --- the family on CartPole ------------------------------------------------------------------

SMALL = {"hidden": [8], "episodes_per_update": 2, "eval_every": 40, "eval_episodes": 1}


def run(steps: int, resume: dict[str, Any] | None = None, **kw: Any) -> tuple[Reinforce, Any]:
    data, params = load_data("cartpole"), ReinforceParams(**SMALL)  # type: ignore[arg-type]
    torch.manual_seed(0)
    module = FAMILY.build(params, data.info)
    rng = kw.pop("rng", None)
    ctx = RecordingContext(steps=steps, resume=resume, **kw)
    if rng is not None:
        ctx.set_rng(rng)  # as the runner restores them with a checkpoint
    FAMILY.fit(module, data, params, ctx)
    assert isinstance(module, Reinforce)
    return module, ctx


def test_a_stop_mid_episode_resumes_bit_exactly() -> None:
    """Stopped after 37 steps (inside an episode, a batch half gathered), checkpointed
    through safetensors and resumed: the same episodes, updates and weights as one run."""
    straight, ctx = run(90)
    _, ctx1 = run(90, stop_after=37)
    (stopped, state, _) = ctx1.checkpoints[-1]
    assert stopped == 37 and len(state["episodes"]["actions"]) > 0  # mid-episode
    resumed, ctx2 = run(90, resume=load_state(dump_state(state)), rng=ctx1.rng[-1], best=ctx1.best)
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(v, w), k  # the served (best) weights
    last, last2 = ctx.checkpoints[-1][1]["model"], ctx2.checkpoints[-1][1]["model"]
    assert all(torch.equal(v, last2[k]) for k, v in last.items())  # the final weights
    assert [h for h in ctx.history if h[0] > 37] == ctx2.history
    assert ctx.metric("episode_return") == ctx1.metric("episode_return") + ctx2.metric(
        "episode_return"
    )
    assert {
        "policy_loss",
        "entropy",
        "value_loss",
        "grad_norm",
        "eval_return_mean",
        "grad_var",
    } <= {k for _, m in ctx.history for k in m}


def test_act_is_greedy_with_the_policy_probabilities() -> None:
    module, _ = run(30)
    obs = torch.randn(6, 4)
    out = FAMILY.capability(Capability.ACT)(module, obs)
    assert out["probs"].shape == (6, 2) and torch.allclose(out["probs"].sum(-1), torch.ones(6))
    assert torch.equal(out["actions"], out["probs"].argmax(-1))
    assert torch.allclose(out["probs"], torch.softmax(module.logits(obs), -1))
