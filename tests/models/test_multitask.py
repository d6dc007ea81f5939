"""multitask: the two uncertainty-weighted loss forms, their optimum in s, and learned σ's."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.context import LocalContext
from models.data import load
from models.data.builtin import MULTITASK_SYNTH_NOISE, binary_entropy
from models.family import Capability
from models.multitask import (
    FAMILY,
    MultiTaskNet,
    MultiTaskParams,
    optimal_log_var,
    task_losses,
    total_loss,
    uncertainty_weighted_loss,
)
from models.optim import OptimizerSpec
from tests.support.data import tiny

REG, CLS = True, False


def test_loss_forms_against_hand_values() -> None:
    """Regression 1/(2σ²)·L + log σ, classification 1/σ²·L + log σ (eqs. 7 and 10)."""
    losses, is_reg = torch.tensor([0.8, 1.2]), torch.tensor([REG, CLS])
    # σ = 1: the data terms alone, regression halved
    assert float(uncertainty_weighted_loss(losses, torch.zeros(2), is_reg)) == pytest.approx(
        0.5 * 0.8 + 1.2
    )
    # σ1² = e^0.5, σ2² = e^-0.3: log σ = s/2
    s = torch.tensor([0.5, -0.3])
    expected = 0.8 / (2 * math.exp(0.5)) + 0.25 + 1.2 / math.exp(-0.3) - 0.15
    assert float(uncertainty_weighted_loss(losses, s, is_reg)) == pytest.approx(expected, rel=1e-6)
    # each term on its own: σ² = 4 regression, σ² = 1/4 classification
    one = torch.tensor([2.0])
    s4, s_quarter = torch.tensor([math.log(4.0)]), torch.tensor([math.log(0.25)])
    assert float(uncertainty_weighted_loss(one, s4, torch.tensor([REG]))) == pytest.approx(
        2.0 / 8 + math.log(2.0)
    )
    assert float(uncertainty_weighted_loss(one, s_quarter, torch.tensor([CLS]))) == pytest.approx(
        2.0 * 4 + math.log(0.5)
    )


def test_gradient_in_log_var_is_analytic() -> None:
    """d/ds [½ e^-s L + ½ s] = ½ − ½ e^-s L; d/ds [e^-s L + ½ s] = ½ − e^-s L."""
    losses = torch.tensor([0.7, 2.5, 0.3, 1.1])
    is_reg = torch.tensor([REG, REG, CLS, CLS])
    s = torch.tensor([-1.0, 0.4, 0.0, 1.3], requires_grad=True)
    uncertainty_weighted_loss(losses, s, is_reg).backward()
    assert s.grad is not None
    e = torch.exp(-s.detach())
    regression = 0.5 - 0.5 * e[:2] * losses[:2]
    classification = 0.5 - e[2:] * losses[2:]
    torch.testing.assert_close(s.grad, torch.cat([regression, classification]))


def test_optimal_sigma_is_the_loss_or_twice_it() -> None:
    """Zero gradient at exp(s) = L (regression), exp(s) = 2L (classification); a minimum."""
    losses = torch.tensor([0.04, 0.9, 0.1, 0.6])
    is_reg = torch.tensor([REG, REG, CLS, CLS])
    s_star = optimal_log_var(losses, is_reg)
    torch.testing.assert_close(s_star.exp(), torch.tensor([0.04, 0.9, 0.2, 1.2]))
    s = s_star.clone().requires_grad_(True)
    uncertainty_weighted_loss(losses, s, is_reg).backward()
    assert s.grad is not None
    torch.testing.assert_close(s.grad, torch.zeros(4), atol=1e-6, rtol=0)
    at_star = float(uncertainty_weighted_loss(losses, s_star, is_reg))
    for d in (-0.3, 0.3):
        assert float(uncertainty_weighted_loss(losses, s_star + d, is_reg)) > at_star
    # and gradient descent on s alone finds it
    s = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([s], lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        uncertainty_weighted_loss(losses, s, is_reg).backward()
        opt.step()
    torch.testing.assert_close(s.detach(), s_star, atol=1e-4, rtol=0)


def test_task_losses_are_mse_and_cross_entropy() -> None:
    data = tiny("multitask_synth")
    module = FAMILY.build(MultiTaskParams(hidden=[8]), data.info)
    assert isinstance(module, MultiTaskNet)
    x, y = data.x_train[:16], data.y_train[:16]
    out = module(x)
    expected = torch.stack(
        [
            F.mse_loss(out["reg_quiet"], y[:, :1]),  # identity normaliser before fit
            F.mse_loss(out["reg_noisy"], y[:, 1:2]),
            F.cross_entropy(out["cls_quiet"], y[:, 2].long()),
            F.cross_entropy(out["cls_noisy"], y[:, 3].long()),
        ]
    )
    torch.testing.assert_close(task_losses(module, x, y), expected)
    with torch.no_grad():
        module.log_var.copy_(torch.tensor([0.1, -0.2, 0.3, -0.4]))
    torch.testing.assert_close(
        total_loss(module, x, y),
        uncertainty_weighted_loss(expected, module.log_var, torch.tensor([1, 1, 0, 0]).bool()),
    )


def test_equal_and_fixed_weighting() -> None:
    data = tiny("multitask_synth")
    weights = {"reg_quiet": 2.0, "reg_noisy": 0.5, "cls_quiet": 1.0, "cls_noisy": 0.0}
    fixed = FAMILY.build(MultiTaskParams(hidden=[8], weighting="fixed", weights=weights), data.info)
    equal = FAMILY.build(MultiTaskParams(hidden=[8], weighting="equal"), data.info)
    assert isinstance(fixed, MultiTaskNet) and isinstance(equal, MultiTaskNet)
    assert not fixed.log_var.requires_grad
    x, y = data.x_train[:16], data.y_train[:16]
    losses = task_losses(fixed, x, y)
    torch.testing.assert_close(
        total_loss(fixed, x, y), (torch.tensor([2.0, 0.5, 1, 0]) * losses).sum()
    )
    torch.testing.assert_close(total_loss(equal, x, y), task_losses(equal, x, y).sum())
    with pytest.raises(ValueError, match="one weight per task"):
        FAMILY.build(MultiTaskParams(weighting="fixed", weights={"reg_quiet": 1.0}), data.info)


def test_equal_weighting_sets_sigma_to_its_validation_optimum() -> None:
    data = tiny("multitask_synth")
    params = MultiTaskParams(hidden=[8], weighting="equal")
    module = FAMILY.build(params, data.info)
    assert isinstance(module, MultiTaskNet)
    FAMILY.fit(module, data, params, LocalContext(epochs=2, batch_size=32))
    with torch.no_grad():
        val = task_losses(module, data.x_val, data.y_val)
    torch.testing.assert_close(module.log_var.detach(), optimal_log_var(val, module.is_reg))


def test_predict_reports_each_task_in_raw_units() -> None:
    data = tiny("multitask_synth")
    params = MultiTaskParams(hidden=[8])
    module = FAMILY.build(params, data.info)
    assert isinstance(module, MultiTaskNet)
    FAMILY.fit(module, data, params, LocalContext(epochs=1, batch_size=32))
    out = FAMILY.capability(Capability.PREDICT)(module, data.x_test[:5], 1)
    y_std = data.y_train[:, 1].std(unbiased=False)
    expected = module.log_var[1].exp() * y_std**2
    torch.testing.assert_close(out["reg_noisy.aleatoric_var"], expected.expand(5, 1).detach())
    torch.testing.assert_close(out["reg_noisy.total_var"], out["reg_noisy.aleatoric_var"])
    torch.testing.assert_close(out["cls_quiet.probs"].sum(-1), torch.ones(5))
    assert out["cls_noisy.mutual_information"].abs().max() == 0


def test_metrics_are_logged_per_task() -> None:
    data = tiny("multitask_synth")
    params = MultiTaskParams(hidden=[8])
    ctx = LocalContext(epochs=1, batch_size=32)
    FAMILY.fit(FAMILY.build(params, data.info), data, params, ctx)
    (_, epoch), (_, test) = ctx.history
    names = [t.name for t in data.info.tasks]
    assert {f"sigma_{n}" for n in names} | {f"loss_{n}" for n in names} <= set(epoch)
    assert {"val_reg_quiet_rmse", "val_reg_quiet_nll", "val_cls_noisy_accuracy"} <= set(epoch)
    assert {"test_loss", "test_reg_noisy_rmse", "test_cls_quiet_nll"} <= set(test)
    assert epoch["val_loss"] == pytest.approx(sum(epoch[f"val_{n}_nll"] for n in names))


@pytest.mark.slow  # trains to quality
def test_learned_sigmas_rank_tasks_by_their_true_noise() -> None:
    """30 epochs on multitask_synth (~1 s): σ per task near the generating noise.

    Regression σ (raw units) is the noise std; classification σ = √(2·CE) is bounded
    below by the Bayes cross-entropy of labels flipped with probability ε, H(ε).
    Seeds 0-2 gave reg 0.118-0.122 / 0.496-0.501 (truth 0.1 / 0.5) and
    cls 0.515-0.528 / 1.081-1.084 (Bayes floor 0.443 / 1.061).
    """
    data = load("multitask_synth")
    params = MultiTaskParams(hidden=[32, 32])
    torch.manual_seed(0)
    module = FAMILY.build(params, data.info)
    ctx = LocalContext(epochs=30, batch_size=64, seed=0, optimizer=OptimizerSpec(lr=0.01))
    FAMILY.fit(module, data, params, ctx)
    sigma = {k.removeprefix("sigma_"): v for k, v in ctx.history[-2][1].items() if "sigma" in k}
    noise = MULTITASK_SYNTH_NOISE
    assert sigma["reg_quiet"] < sigma["reg_noisy"] and sigma["cls_quiet"] < sigma["cls_noisy"]
    for task in ("reg_quiet", "reg_noisy"):
        assert sigma[task] == pytest.approx(noise[task], rel=0.3)
    for task in ("cls_quiet", "cls_noisy"):
        floor = math.sqrt(2 * binary_entropy(noise[task]))
        assert 0.9 * floor < sigma[task] < 1.35 * floor
