"""Our update rules, step by step, against torch.optim or a hand-written formula."""

from __future__ import annotations

import copy
import io
import math
import typing
from collections.abc import Callable

import pytest
import torch

from models.data import LANDSCAPES, load_data
from models.optim import OptimizerName, OptimizerSpec, build_optimizer, gradient_and_hessian

STEPS = 6
WD = 0.1
# eps = 0.1 is large on purpose: it makes the placement of ε (inside or outside the root) matter
SPEC = {"lr": 0.05, "momentum": 0.8, "alpha": 0.9, "beta1": 0.8, "beta2": 0.95, "eps": 0.1}

TorchFactory = Callable[[list[torch.Tensor], OptimizerSpec], torch.optim.Optimizer]

TORCH_RULES: dict[str, TorchFactory] = {
    "sgd": lambda ps, s: torch.optim.SGD(ps, lr=s.lr, weight_decay=WD),
    "momentum": lambda ps, s: torch.optim.SGD(ps, lr=s.lr, momentum=s.momentum, weight_decay=WD),
    "nesterov": lambda ps, s: torch.optim.SGD(
        ps, lr=s.lr, momentum=s.momentum, nesterov=True, weight_decay=WD
    ),
    "rmsprop": lambda ps, s: torch.optim.RMSprop(
        ps, lr=s.lr, alpha=s.alpha, eps=s.eps, weight_decay=WD
    ),
    "rmsprop_momentum": lambda ps, s: torch.optim.RMSprop(
        ps, lr=s.lr, alpha=s.alpha, eps=s.eps, momentum=s.momentum, weight_decay=WD
    ),
    "adam": lambda ps, s: torch.optim.Adam(
        ps, lr=s.lr, betas=(s.beta1, s.beta2), eps=s.eps, weight_decay=WD
    ),
}
ALL_RULES: tuple[OptimizerName, ...] = typing.get_args(OptimizerName)
# the rules that step on p.grad alone (newton needs the loss itself: its tests are below)
FIRST_ORDER = tuple(name for name in ALL_RULES if name != "newton")


def make_params(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(5, generator=g, dtype=torch.float64),
    ]


def grads(n_steps: int, like: list[torch.Tensor], seed: int = 1) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in like] for _ in range(n_steps)
    ]


def run(
    opt: torch.optim.Optimizer, params: list[torch.Tensor], gs: list[list[torch.Tensor]]
) -> list[list[torch.Tensor]]:
    """Apply the given gradients step by step; the parameters after each step."""
    trace = []
    for step_grads in gs:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()
        trace.append([p.detach().clone() for p in params])
    return trace


def leaf_params(seed: int = 0) -> list[torch.Tensor]:
    return [p.requires_grad_() for p in make_params(seed)]


@pytest.mark.parametrize("name", list(TORCH_RULES))
def test_rule_matches_torch_step_by_step(name: OptimizerName) -> None:
    spec = OptimizerSpec(name=name, weight_decay=WD, **SPEC)
    ours, theirs = leaf_params(), leaf_params()
    gs = grads(STEPS, ours)
    ours_trace = run(build_optimizer(spec, ours), ours, gs)
    theirs_trace = run(TORCH_RULES[name](theirs, spec), theirs, gs)
    for step, (a, b) in enumerate(zip(ours_trace, theirs_trace, strict=True), 1):
        for pa, pb in zip(a, b, strict=True):
            torch.testing.assert_close(pa, pb, msg=f"{name} differs from torch at step {step}")


def test_adam_without_bias_correction_matches_the_formula() -> None:
    spec = OptimizerSpec(name="adam_no_bias_correction", weight_decay=WD, **SPEC)
    params = leaf_params()
    gs = grads(STEPS, params)
    trace = run(build_optimizer(spec, params), params, gs)
    w = [p.detach().clone() for p in make_params()]
    m = [torch.zeros_like(x) for x in w]
    v = [torch.zeros_like(x) for x in w]
    for step_grads, ours in zip(gs, trace, strict=True):
        for i, g in enumerate(step_grads):
            g = g + WD * w[i]
            m[i] = spec.beta1 * m[i] + (1 - spec.beta1) * g
            v[i] = spec.beta2 * v[i] + (1 - spec.beta2) * g**2
            w[i] = w[i] - spec.lr * m[i] / (v[i].sqrt() + spec.eps)  # no 1/(1-β^t)
            torch.testing.assert_close(ours[i], w[i])


def test_bias_correction_enlarges_the_first_adam_step() -> None:
    """Without correction m_1 = (1-β1) g and v_1 = (1-β2) g²: the first step is scaled by
    (1-β1)/sqrt(1-β2), about 3.2 for the defaults, instead of ±η."""
    moves = {}
    for name in ("adam", "adam_no_bias_correction"):
        p = torch.zeros(1, requires_grad=True)
        opt = build_optimizer(OptimizerSpec(name=name, lr=1.0, eps=1e-12), [p])
        p.grad = torch.ones(1)
        opt.step()
        moves[name] = -float(p.detach())
    assert moves["adam"] == pytest.approx(1.0)
    assert moves["adam_no_bias_correction"] == pytest.approx(0.1 / 0.001**0.5, rel=1e-6)


@pytest.mark.parametrize("name", FIRST_ORDER)
def test_state_dict_round_trip_mid_way_gives_identical_steps(name: OptimizerName) -> None:
    spec = OptimizerSpec(name=name, weight_decay=WD, **SPEC)
    a = leaf_params()
    opt_a = build_optimizer(spec, a)
    gs = grads(2 * 3, a)
    run(opt_a, a, gs[:3])
    # through bytes with weights_only=True, as a checkpoint would travel
    buf = io.BytesIO()
    torch.save(copy.deepcopy(opt_a.state_dict()), buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    b = [p.detach().clone().requires_grad_() for p in a]
    opt_b = build_optimizer(spec, b)
    opt_b.load_state_dict(saved)
    for pa, pb in zip(run(opt_a, a, gs[3:])[-1], run(opt_b, b, gs[3:])[-1], strict=True):
        assert torch.equal(pa, pb)
    assert int(opt_b.state[b[0]]["step"]) == 6


def test_state_has_tensors_and_groups_only_json_scalars() -> None:
    p = torch.zeros(2, requires_grad=True)
    opt = build_optimizer(OptimizerSpec(name="rmsprop_momentum"), [p])
    p.grad = torch.ones(2)
    opt.step()
    sd = opt.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in sd["state"][0].values())
    group = {k: v for k, v in sd["param_groups"][0].items() if k != "params"}
    assert all(isinstance(v, bool | int | float) for v in group.values())


def test_weight_decay_override_and_per_group_values() -> None:
    spec = OptimizerSpec(name="sgd", lr=1.0, weight_decay=0.5)
    p, q = torch.ones(1, requires_grad=True), torch.ones(1, requires_grad=True)
    opt = build_optimizer(
        spec, [{"params": [p]}, {"params": [q], "weight_decay": 0.25}], weight_decay=0.1
    )
    p.grad, q.grad = torch.zeros(1), torch.zeros(1)
    opt.step()
    assert float(p.detach()) == pytest.approx(0.9)  # the override 0.1, not the spec's 0.5
    assert float(q.detach()) == pytest.approx(0.75)  # the group's own value wins


def test_step_accepts_a_closure_and_skips_params_without_grad() -> None:
    p, frozen = torch.tensor([2.0], requires_grad=True), torch.tensor([5.0], requires_grad=True)
    opt = build_optimizer(OptimizerSpec(name="momentum", lr=0.1), [p, frozen])

    def closure() -> float:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss.item()

    assert opt.step(closure) == pytest.approx(4.0)
    assert float(p.detach()) == pytest.approx(2.0 - 0.1 * 4.0)
    assert float(frozen.detach()) == 5.0 and frozen not in opt.state


@pytest.mark.parametrize("bias_correction", [True, False])
def test_adam_on_the_whole_list_is_its_per_tensor_rule_bit_for_bit(bias_correction: bool) -> None:
    """Adam's foreach path does ``_update``'s arithmetic op for op: the same bits, with
    weight decay, a parameter without a gradient on some steps (its own step count, so its
    own bias correction) and a second group."""
    from models.optim import Adam

    torch.manual_seed(0)
    weights = [torch.randn(7, 5), torch.randn(5), torch.randn(3, 3)]
    fast = [torch.nn.Parameter(w.clone()) for w in weights]
    slow = [torch.nn.Parameter(w.clone()) for w in weights]

    def make(ps: list[torch.nn.Parameter]) -> Adam:
        groups = [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.03}]
        return Adam(groups, lr=0.01, weight_decay=0.1, bias_correction=bias_correction)

    opt_fast, opt_slow = make(fast), make(slow)
    opt_slow._update_group = lambda *a: super(Adam, opt_slow)._update_group(*a)  # type: ignore[method-assign]
    for step in range(6):
        grads = [torch.randn_like(w) for w in weights]
        for ps in (fast, slow):
            for i, (p, g) in enumerate(zip(ps, grads, strict=True)):
                p.grad = None if (i == 1 and step % 3 == 0) else g.clone()
        opt_fast.step()
        opt_slow.step()
        for a, b in zip(fast, slow, strict=True):
            assert torch.equal(a, b), step
    assert int(opt_fast.state[fast[1]]["step"]) == 4  # skipped twice


# --- on the landscapes: real gradients, every rule torch has ---------------------------


@pytest.mark.parametrize("landscape", sorted(LANDSCAPES))
@pytest.mark.parametrize("name", list(TORCH_RULES))
def test_rule_matches_torch_on_the_landscapes(name: OptimizerName, landscape: str) -> None:
    """20 steps from the landscape's start on its own gradients: the same path as
    torch.optim's (the gradient at each point depends on the path so far, so a difference
    at any step would grow)."""
    land = load_data(landscape)
    spec = OptimizerSpec(name=name, lr=1e-3, weight_decay=0.0, momentum=0.9)
    ours = torch.tensor(land.start, dtype=torch.float64, requires_grad=True)
    theirs = ours.detach().clone().requires_grad_()
    opt_ours = build_optimizer(spec, [ours])
    opt_theirs = TORCH_RULES[name]([theirs], spec)
    for group in opt_theirs.param_groups:
        group["weight_decay"] = 0.0
    for step in range(1, 21):
        for w, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            land(w).backward()
            opt.step()
        torch.testing.assert_close(ours, theirs, msg=f"{name} on {landscape}, step {step}")


# --- newton -------------------------------------------------------------------------------


def quadratic_problem(dim: int, kappa: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A (dim, dim) symmetric positive definite with condition number κ, and b (dim,)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    lam = torch.logspace(0, math.log10(kappa), dim, dtype=torch.float64)
    return (q * lam) @ q.T, torch.randn(dim, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("kappa", [1.0, 1e3, 1e8])
def test_newton_solves_a_quadratic_in_one_undamped_step(kappa: float) -> None:
    """f(w) = ½ wᵀAw − bᵀw over two parameter tensors: one step of η = 1 lands on A⁻¹b,
    whatever A's condition number."""
    a, b = quadratic_problem(7, kappa)
    w1 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    w2 = torch.ones(4, dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        w = torch.cat([w1, w2])
        return 0.5 * w @ a @ w - b @ w

    opt = build_optimizer(OptimizerSpec(name="newton", lr=1.0), [w1, w2])
    returned = opt.step(loss)
    assert isinstance(returned, torch.Tensor)
    solution = torch.linalg.solve(a, b)
    torch.testing.assert_close(
        torch.cat([w1, w2]).detach(), solution, rtol=1e-6 * kappa**0.5, atol=0
    )
    assert int(opt.state[w1]["step"]) == 1


def test_gradient_and_hessian_match_autograd_functional() -> None:
    land = load_data("rosenbrock")
    x = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    a, b = x[:1].clone().requires_grad_(), x[1:].clone().requires_grad_()
    g, h = gradient_and_hessian(land(torch.cat([a, b])), [a, b])
    torch.testing.assert_close(g, torch.autograd.functional.jacobian(land, x))
    torch.testing.assert_close(h, torch.autograd.functional.hessian(land, x))
    # by hand: ∂²/∂x² = 2 − 400(y − x²) + 800x², ∂²/∂x∂y = −400x, ∂²/∂y² = 200
    hand = torch.tensor(
        [[2 - 400 * (1 - 1.44) + 800 * 1.44, 480.0], [480.0, 200.0]], dtype=torch.float64
    )
    torch.testing.assert_close(h, hand)


def test_newton_with_damping_and_weight_decay_is_the_formula() -> None:
    """One step is w − η (H + λI + δI)⁻¹ (g + λw)."""
    land = load_data("beale")
    w = torch.tensor(land.start, dtype=torch.float64, requires_grad=True)
    x = w.detach().clone()
    spec = OptimizerSpec(name="newton", lr=0.5, damping=2.0, weight_decay=0.1)
    build_optimizer(spec, [w]).step(lambda: land(w))
    g = torch.autograd.functional.jacobian(land, x) + 0.1 * x
    h = torch.autograd.functional.hessian(land, x) + (0.1 + 2.0) * torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(w.detach(), x - 0.5 * torch.linalg.solve(h, g))


def newton_path(landscape: str, steps: int, **spec: object) -> torch.Tensor:
    land = load_data(landscape)
    w = torch.tensor(land.start, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(OptimizerSpec(name="newton", lr=1.0, **spec), [w])  # type: ignore[arg-type]
    for _ in range(steps):
        opt.step(lambda: land(w))
    return w.detach()


def test_newton_goes_to_the_saddle_and_the_line_search_does_not() -> None:
    """On x² + y⁴/4 − y²/2 from (1, 0.001): Newton's step seeks a zero of the gradient and
    lands on the saddle (0, 0). With the line search the first step still lands near it
    (the loss falls from 1 to 0, enough for Armijo), but there H is indefinite, the step no
    descent direction: the search follows −g and the path reaches a minimum (0, ±1)."""
    torch.testing.assert_close(newton_path("saddle", 20), torch.zeros(2, dtype=torch.float64))
    x, y = newton_path("saddle", 60, line_search=True).tolist()
    assert x == pytest.approx(0.0, abs=1e-9) and abs(y) == pytest.approx(1.0, abs=1e-9)


def test_the_line_search_rescues_newton_on_the_logistic_loss() -> None:
    """From (−1, 2), far from the minimum, the logistic loss is nearly linear, its Hessian
    nearly singular: a full Newton step overshoots and the iterates run away; halving the
    step until the loss decreases enough converges."""
    from models.data.builtin import LOGISTIC_ARGMIN

    assert newton_path("logistic", 20).abs().max() > 100
    torch.testing.assert_close(
        newton_path("logistic", 30, line_search=True),
        torch.tensor(LOGISTIC_ARGMIN, dtype=torch.float64),
    )


def test_newton_needs_a_closure_and_round_trips() -> None:
    w = torch.ones(2, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(OptimizerSpec(name="newton"), [w])
    w.grad = torch.ones(2, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()
    opt.step(lambda: (w**4).sum())
    again = build_optimizer(OptimizerSpec(name="newton"), [w])
    again.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert int(again.state[w]["step"]) == 1


def test_newton_trains_an_mlp_through_the_shared_loop() -> None:
    """models.loop passes newton a closure: a 2-4-2 network on moons (22 parameters) takes
    damped Newton steps (damping: its Hessian is indefinite) and its loss falls."""
    from models.context import LocalContext
    from models.mlp import FAMILY, MLPParams

    data = load_data("moons")
    params = MLPParams(hidden=[4], activation="tanh")
    torch.manual_seed(0)
    module = FAMILY.build(params, data.info)
    spec = OptimizerSpec(name="newton", lr=1.0, damping=1.0, line_search=True)
    ctx = LocalContext(epochs=3, batch_size=512, optimizer=spec)
    FAMILY.fit(module, data, params, ctx)
    losses = [m["train_loss"] for _, m in ctx.history if "train_loss" in m]
    assert len(losses) == 3 and losses[-1] < losses[0]
