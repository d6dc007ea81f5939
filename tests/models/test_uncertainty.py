"""Uncertainty summaries and losses against values derived by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.uncertainty import (
    classification_summary,
    entropy,
    gaussian_log_prob,
    gaussian_nll,
    heteroscedastic_loss,
    mc_log_likelihood,
    model_precision,
    regression_summary,
    weight_decay_for_precision,
)


def t(x: object) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_regression_summary_two_passes() -> None:
    # one input, one target; passes predict 1 and 3 with noise variances 0.5 and 1.5
    means, variances = t([[[1.0]], [[3.0]]]), t([[[0.5]], [[1.5]]])
    out = regression_summary(means, variances)
    assert float(out["mean"]) == 2.0
    assert float(out["epistemic_var"]) == 1.0  # ((1-2)² + (3-2)²) / 2, population variance
    assert float(out["aleatoric_var"]) == 1.0
    assert float(out["total_var"]) == 2.0
    assert {k: v.shape for k, v in out.items()} == dict.fromkeys(out, torch.Size([1, 1]))


def test_regression_summary_without_variances_has_zero_aleatoric() -> None:
    out = regression_summary(t([[[1.0, 2.0]], [[1.0, 4.0]]]))
    assert torch.equal(out["aleatoric_var"], torch.zeros(1, 2, dtype=torch.float64))
    assert torch.equal(out["epistemic_var"], t([[0.0, 1.0]]))


def test_single_pass_has_zero_epistemic_variance() -> None:
    out = regression_summary(t([[[1.0], [2.0]]]), t([[[0.1], [0.2]]]))
    assert torch.equal(out["epistemic_var"], torch.zeros(2, 1, dtype=torch.float64))


def test_entropies_uniform_and_disagreeing_one_hot() -> None:
    uniform = torch.full((3, 1, 4), 0.25, dtype=torch.float64)
    out = classification_summary(uniform)
    assert float(out["predictive_entropy"]) == pytest.approx(math.log(4))
    assert float(out["expected_entropy"]) == pytest.approx(math.log(4))
    assert float(out["mutual_information"]) == pytest.approx(0.0, abs=1e-12)
    # two confident passes that disagree: no aleatoric, all epistemic
    one_hot = t([[[1.0, 0.0]], [[0.0, 1.0]]])
    out = classification_summary(one_hot)
    assert torch.equal(out["probs"], t([[0.5, 0.5]]))
    assert float(out["predictive_entropy"]) == pytest.approx(math.log(2))
    assert float(out["expected_entropy"]) == 0.0  # 0 log 0 = 0, not nan
    assert float(out["mutual_information"]) == pytest.approx(math.log(2))


probs_arrays = arrays(
    np.float64, st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(2, 5)),
    elements=st.floats(-6, 6),
).map(lambda a: torch.from_numpy(a).softmax(-1))  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(probs_arrays)
def test_mutual_information_is_non_negative_and_decomposes(probs: torch.Tensor) -> None:
    out = classification_summary(probs)
    assert (out["mutual_information"] >= 0).all()
    gap = out["predictive_entropy"] - out["expected_entropy"]
    assert (gap >= -1e-9).all()  # Jensen
    assert (out["predictive_entropy"] <= math.log(probs.shape[-1]) + 1e-9).all()


moment_arrays = st.integers(1, 6).flatmap(
    lambda n_t: st.tuples(
        arrays(np.float64, (n_t, 3, 2), elements=st.floats(-100, 100)),
        arrays(np.float64, (n_t, 3, 2), elements=st.floats(1e-6, 100)),
    )
)


@settings(max_examples=60, deadline=None)
@given(moment_arrays)
def test_total_variance_is_epistemic_plus_aleatoric(arrays_: tuple[np.ndarray, np.ndarray]) -> None:
    means, variances = (torch.from_numpy(a) for a in arrays_)
    out = regression_summary(means, variances)
    torch.testing.assert_close(out["total_var"], out["epistemic_var"] + out["aleatoric_var"])
    torch.testing.assert_close(out["epistemic_var"], torch.from_numpy(arrays_[0].var(0)))
    # the mixture's variance, computed as E[y²] - E[y]²
    second_moment = (variances + means**2).mean(0)
    torch.testing.assert_close(
        out["total_var"], second_moment - out["mean"] ** 2, atol=1e-6, rtol=1e-6
    )


def test_entropy_in_nats() -> None:
    assert float(entropy(t([0.5, 0.25, 0.25]))) == pytest.approx(1.5 * math.log(2))


def test_heteroscedastic_loss_scalar_case() -> None:
    # y = 2, ŷ = 1, s = log σ² = log 4: ½ · (1/4) · 1 + ½ · log 4
    loss = heteroscedastic_loss(t([[2.0]]), t([[1.0]]), t([[math.log(4.0)]]))
    assert float(loss) == pytest.approx(0.125 + 0.5 * math.log(4.0))
    # the Gaussian NLL less its constant
    nll = gaussian_nll(t([[2.0]]), t([[1.0]]), t([[4.0]]))
    assert float(loss) == pytest.approx(float(nll) - 0.5 * math.log(2 * math.pi))


def test_heteroscedastic_loss_sums_dims_and_averages_the_batch() -> None:
    y, mean, log_var = t([[1.0, 1.0], [3.0, 0.0]]), t([[0.0, 1.0], [1.0, 0.0]]), torch.zeros(2, 2)
    # per point Σ_d ½ (y-ŷ)²: 0.5 and 2.0 -> mean 1.25
    assert float(heteroscedastic_loss(y, mean, log_var.double())) == pytest.approx(1.25)


def test_heteroscedastic_optimum_is_the_squared_residual() -> None:
    s = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([s], max_iter=50)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = heteroscedastic_loss(t([[3.0]]), t([[1.0]]), s)
        loss.backward()
        return loss

    opt.step(closure)
    assert float(s.detach().exp()) == pytest.approx(4.0, rel=1e-4)


def test_beta_nll_hand_values() -> None:
    y, s0 = t([[2.0]]), math.log(4.0)  # σ² = 4
    plain = 0.125 + 0.5 * math.log(4.0)
    # β = 0 is the plain loss
    assert float(heteroscedastic_loss(y, t([[1.0]]), t([[s0]]), 0.0)) == pytest.approx(plain)
    for beta in (0.0, 0.5, 1.0):
        mean = t([[1.0]]).requires_grad_(True)
        log_var = t([[s0]]).requires_grad_(True)
        loss = heteroscedastic_loss(y, mean, log_var, beta)
        loss.backward()
        assert float(loss) == pytest.approx(4.0**beta * plain)  # value weighted by σ^{2β}
        # ∂/∂ŷ = σ^{2β} (ŷ-y)/σ² = 4^β · (-1/4)
        assert mean.grad is not None and log_var.grad is not None
        assert float(mean.grad) == pytest.approx(-0.25 * 4.0**beta)
        # ∂/∂s: σ^{2β} (½ - ½ (y-ŷ)²/σ²), the weight a constant: ½ - ⅛ = 0.375
        assert float(log_var.grad) == pytest.approx(0.375 * 4.0**beta)


def test_beta_nll_keeps_the_optimal_variance() -> None:
    s = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([s], max_iter=50)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = heteroscedastic_loss(t([[3.0]]), t([[1.0]]), s, 0.5)
        loss.backward()
        return loss

    opt.step(closure)
    assert float(s.detach().exp()) == pytest.approx(4.0, rel=1e-4)


def test_gaussian_log_prob_matches_torch_distributions() -> None:
    y, mean, var = t([0.3, -1.0]), t([0.0, 1.0]), t([2.0, 0.5])
    expected = torch.distributions.Normal(mean, var.sqrt()).log_prob(y)
    torch.testing.assert_close(gaussian_log_prob(y, mean, var), expected)


def test_mc_log_likelihood_by_hand() -> None:
    y = t([[0.0]])
    means, variances = t([[[0.0]], [[2.0]]]), t([[[1.0]], [[1.0]]])
    n0, n2 = (math.exp(-0.5 * d**2) / math.sqrt(2 * math.pi) for d in (0.0, 2.0))
    assert float(mc_log_likelihood(y, means, variances)) == pytest.approx(math.log((n0 + n2) / 2))


def test_mc_log_likelihood_one_pass_sums_dimensions() -> None:
    y, mean, var = t([[0.5, -0.5]]), t([[0.0, 0.0]]), t([[1.0, 4.0]])
    expected = torch.distributions.Normal(mean, var.sqrt()).log_prob(y).sum(-1)
    torch.testing.assert_close(mc_log_likelihood(y, mean[None], var[None]), expected)


def test_mc_log_likelihood_is_stable_far_from_every_mean() -> None:
    ll = mc_log_likelihood(t([[100.0]]), t([[[0.0]], [[1.0]]]), t([[[1e-2]], [[1e-2]]]))
    assert torch.isfinite(ll).all()


def test_model_precision_numbers() -> None:
    # l = 1e-2, drop p = 0.1 (keep 0.9), N = 400, λ = 1e-6: τ = 1e-4 · 0.9 / (2 · 400 · 1e-6)
    assert model_precision(1e-2, 0.1, 400, 1e-6) == pytest.approx(0.1125)
    assert model_precision(1.0, 0.5, 10, 0.05) == pytest.approx(0.5)
    assert model_precision(1e-2, 0.1, 400, 0.0) == math.inf
    lam = weight_decay_for_precision(1e-2, 0.1, 400, 0.1125)
    assert lam == pytest.approx(1e-6)
    assert model_precision(1e-2, 0.1, 400, lam) == pytest.approx(0.1125)
