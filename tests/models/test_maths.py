"""The notes' eqs. 1-3 (``models.maths``) against autograd, closed forms and torch's own."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from models.maths import (
    kl_discrete,
    kl_gaussians,
    kl_quadrature,
    softmax_jacobian,
    variance,
    variance_two_pass,
)


def test_variance_is_the_second_moment_less_the_squared_mean() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1000, generator=g, dtype=torch.float64) * 3 + 2
    torch.testing.assert_close(variance(x), x.var(-1, correction=0))
    torch.testing.assert_close(variance(x), variance_two_pass(x))
    # by hand: {1, 2, 3, 4}: E[X²] = 7.5, E[X]² = 6.25
    assert variance(torch.tensor([1.0, 2.0, 3.0, 4.0])).item() == pytest.approx(1.25)


def test_the_one_pass_variance_cancels_where_the_two_pass_does_not() -> None:
    """float32, mean 10⁴, spread 1: E[X²] and E[X]² agree in their first 8 digits, and
    their difference is noise; the two-pass form keeps the variance."""
    x = torch.tensor([1e4 - 1, 1e4, 1e4 + 1], dtype=torch.float32)
    assert variance_two_pass(x).item() == pytest.approx(2 / 3, rel=1e-5)
    assert abs(variance(x).item() - 2 / 3) > 1e-3


def test_softmax_jacobian_matches_autograd() -> None:
    g = torch.Generator().manual_seed(1)
    for z in (
        torch.randn(5, generator=g, dtype=torch.float64),
        torch.zeros(3, dtype=torch.float64),
    ):
        auto = jacobian(lambda v: v.softmax(-1), z)
        torch.testing.assert_close(softmax_jacobian(z), auto)
        j = softmax_jacobian(z)
        torch.testing.assert_close(j, j.T)  # symmetric
        torch.testing.assert_close(j.sum(-1), torch.zeros_like(z), atol=1e-15, rtol=0)
    batch = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)
    for i in range(2):
        for k in range(4):
            auto = jacobian(lambda v: v.softmax(-1), batch[i, k])
            torch.testing.assert_close(softmax_jacobian(batch)[i, k], auto)
    # uniform logits: diag(1/k) − 1/k²
    k = 4
    torch.testing.assert_close(
        softmax_jacobian(torch.zeros(k, dtype=torch.float64)),
        torch.eye(k, dtype=torch.float64) / k - 1 / k**2,
    )


def test_discrete_kl_matches_torch_and_its_properties() -> None:
    p = torch.tensor([0.5, 0.25, 0.25, 0.0], dtype=torch.float64)
    q = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
    # by hand: 0.5 log 2 + 0 + 0 + 0 (the p = 0 term is 0)
    assert kl_discrete(p, q).item() == pytest.approx(0.5 * math.log(2))
    torch.testing.assert_close(
        kl_discrete(p, q), torch.nn.functional.kl_div(q.log(), p, reduction="sum")
    )
    assert kl_discrete(q, q).item() == 0.0
    assert kl_discrete(q, p).item() == math.inf  # q has mass where p has none
    assert kl_discrete(p, q).item() != pytest.approx(kl_discrete(q, p.clamp_min(1e-3)).item())


@pytest.mark.parametrize(
    ("mu_p", "s_p", "mu_q", "s_q"),
    [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -1.0, 2.0), (2.0, 1.5, 1.0, 0.7)],
)
def test_kl_by_quadrature_is_the_gaussian_closed_form(
    mu_p: float, s_p: float, mu_q: float, s_q: float
) -> None:
    def normal(mu: float, s: float) -> torch.distributions.Normal:
        return torch.distributions.Normal(
            torch.tensor(mu, dtype=torch.float64), torch.tensor(s, dtype=torch.float64)
        )

    p, q = normal(mu_p, s_p), normal(mu_q, s_q)
    grid = torch.linspace(mu_p - 12 * s_p, mu_p + 12 * s_p, 20_001, dtype=torch.float64)
    numeric = kl_quadrature(p.log_prob, q.log_prob, grid)
    closed = kl_gaussians(*(torch.tensor(v, dtype=torch.float64) for v in (mu_p, s_p, mu_q, s_q)))
    assert numeric.item() == pytest.approx(closed.item(), abs=1e-9)
    torch.testing.assert_close(closed, torch.distributions.kl_divergence(p, q))
