"""Our update rules, step by step, against torch.optim or a hand-written formula."""

from __future__ import annotations

import copy
import io
import typing
from collections.abc import Callable

import pytest
import torch

from models.optim import OptimizerName, OptimizerSpec, build_optimizer

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


@pytest.mark.parametrize("name", ALL_RULES)
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
