"""The VAE's maths on models where the answer is known, and its family-specific behaviour.

A linear-Gaussian VAE (p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I)) has the exact marginal
p(x) = N(b, WWᵀ + σ²I); with WᵀW diagonal its posterior is a diagonal Gaussian too, so
an encoder can be exact (every importance weight is then p(x)) or deliberately off.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from models import likelihoods as lik
from models.context import LocalContext
from models.data import from_arrays
from models.family import Capability
from models.generative import OptionError, SampleOptions
from models.vae import FAMILY, VAE, VAEParams, estimate, iwae_bound
from tests.support.data import RecordingContext, tiny

D, K, SIGMA = 3, 2, 0.5


def toy_info(d: int = D) -> Any:
    x = torch.randn(16, d).numpy()
    y = torch.zeros(16).numpy()
    return from_arrays("toy", "regression", (x, y), (x, y), (x, y)).info


def linear_gaussian(offset: float = 0.0, log_var_offset: float = 0.0) -> tuple[VAE, Tensor, Tensor]:
    """A float64 VAE with a linear decoder and the exact posterior as encoder (shifted by
    ``offset`` and ``log_var_offset`` when asked); returns it, b, and the marginal's cov."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, K, dtype=torch.float64))
    w = q * torch.tensor([1.5, 0.7], dtype=torch.float64)  # orthogonal columns: WᵀW diagonal
    b = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    post_var = 1.0 / (1.0 + (w * w).sum(0) / SIGMA**2)  # diag of (I + WᵀW/σ²)⁻¹

    class Decoder(nn.Module):
        def forward(self, z: Tensor, c: Tensor | None) -> Tensor:
            log_sigma = torch.full((len(z), D), math.log(SIGMA), dtype=z.dtype)
            return torch.stack([z @ w.T + b, log_sigma], 1)  # (B, 2, D)

    class Encoder(nn.Module):
        def forward(self, u: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
            mean = (u - b) @ w * post_var / SIGMA**2 + offset
            return mean, (post_var.log() + log_var_offset).expand_as(mean)

    vae = VAE(VAEParams(z_dim=K, hidden=[4]), toy_info()).double()
    vae.encoder, vae.decoder = Encoder(), Decoder()
    return vae, b, w @ w.T + SIGMA**2 * torch.eye(D, dtype=torch.float64)


def exact_log_p(x: Tensor, b: Tensor, cov: Tensor) -> Tensor:
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x)


X = torch.tensor([[0.5, -1.0, 0.8], [2.0, 0.0, -1.5]], dtype=torch.float64)


def test_gaussian_kl_matches_monte_carlo() -> None:
    gen = torch.Generator().manual_seed(1)
    mean = torch.tensor([0.5, -1.2, 0.0], dtype=torch.float64)
    log_var = torch.tensor([-0.7, 0.4, 1.1], dtype=torch.float64)
    z = mean + (0.5 * log_var).exp() * torch.randn(400_000, 3, generator=gen, dtype=torch.float64)
    terms = lik.gaussian_log_prob(z, mean, log_var) - lik.standard_normal_log_prob(z)
    se = float(terms.std() / math.sqrt(len(z)))
    closed = float(lik.gaussian_kl(mean, log_var))
    assert abs(float(terms.mean()) - closed) < 4 * se
    assert float(lik.gaussian_kl(torch.zeros(3), torch.zeros(3))) == 0.0


def test_exact_posterior_makes_every_bound_log_p() -> None:
    vae, b, cov = linear_gaussian()
    truth = exact_log_p(X, b, cov)
    for k in (1, 7):
        torch.testing.assert_close(iwae_bound(vae, X, None, k), truth, rtol=0, atol=1e-9)


def test_elbo_below_log_p_and_iwae_rises_with_k_towards_it() -> None:
    vae, b, cov = linear_gaussian(offset=0.6, log_var_offset=0.8)
    truth = float(exact_log_p(X[:1], b, cov))
    gen = torch.Generator().manual_seed(2)
    reps = X[:1].repeat(4000, 1)  # independent bounds, one per row
    means, ses = [], []
    for k in (1, 4, 16, 64, 512):
        bound = iwae_bound(vae, reps, None, k, gen)
        means.append(float(bound.mean()))
        ses.append(float(bound.std() / math.sqrt(len(bound))))
    for m, se in zip(means, ses, strict=True):
        assert m <= truth + 3 * se
    assert means[0] < truth - 0.2  # a visibly loose ELBO
    for lo, hi, se_lo, se_hi in zip(means, means[1:], ses, ses[1:], strict=False):
        assert hi > lo + 3 * math.hypot(se_lo, se_hi)
    assert truth - means[-1] < 0.02


def test_the_two_elbo_forms_agree_in_expectation() -> None:
    torch.manual_seed(0)
    vae = VAE(VAEParams(z_dim=K, hidden=[8]), toy_info())
    x = torch.randn(5, D).repeat(20_000, 1)
    with torch.no_grad():
        t = estimate(vae, x, None, "reparam", 1.0)
    diff = (t.recon - t.kl) - (t.recon + t.log_pz - t.log_qz)  # = KL - (log q - log p)
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(len(diff))
    vae_exact, b, cov = linear_gaussian()
    with torch.no_grad():
        t = estimate(vae_exact, X, None, "reparam", 1.0)
    torch.testing.assert_close(t.recon + t.log_pz - t.log_qz, exact_log_p(X, b, cov))


@pytest.mark.parametrize("baseline", ["none", "mean"])
def test_reinforce_gradient_agrees_with_reparam_in_expectation(baseline: str) -> None:
    torch.manual_seed(0)
    vae = VAE(VAEParams(z_dim=K, hidden=[4], estimator="reinforce", baseline=baseline), toy_info())
    vae.signal_mean.fill_(-3.0)  # a constant baseline: any value keeps the estimate unbiased
    x = torch.randn(4, D).repeat(64, 1)  # each estimate averages 256 single-sample ones
    params = list(vae.encoder.parameters())

    def draws(estimator: str, n: int) -> Tensor:
        out = []
        for _ in range(n):
            t = estimate(vae, x, None, estimator, 1.0, baseline=baseline)
            out.append(torch.cat([g.flatten() for g in torch.autograd.grad(t.loss, params)]))
        return torch.stack(out).double()

    rep, rf = draws("reparam", 100), draws("reinforce", 600)
    se = torch.sqrt(rep.var(0) / len(rep) + rf.var(0) / len(rf))
    z = (rep.mean(0) - rf.mean(0)).abs() / se
    assert float(z.max()) < 4.5, z
    assert float(rf.var(0).sum()) > 10 * float(rep.var(0).sum())  # why REINFORCE is slow


def test_discretized_logistic_is_a_distribution_over_the_levels() -> None:
    levels = torch.linspace(0, 1, 17, dtype=torch.float64)[:, None]  # (17, 1): one pixel
    for mean, log_scale in [(0.3, -2.0), (-0.5, -5.0), (0.97, -7.5), (0.5, 1.0)]:
        m = torch.full_like(levels, mean)
        s = torch.full_like(levels, log_scale)
        p = lik.discretized_logistic_log_prob(levels, m, s, 1 / 16).exp()
        torch.testing.assert_close(float(p.sum()), 1.0, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("dataset", "params", "message"),
    [
        ("moons", {"architecture": "conv"}, "conv"),
        ("digits", {"likelihood": "bernoulli"}, "binary"),
        ("moons", {"likelihood": "discretized_logistic"}, "discrete"),
        ("diabetes", {"conditional": True}, "labels"),
    ],
)
def test_build_refuses_what_the_data_cannot_take(
    dataset: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FAMILY.build(VAEParams(**params), tiny(dataset).info)


def trained(dataset: str, **params: Any) -> tuple[VAE, LocalContext]:
    data = tiny(dataset)
    p = VAEParams(**{"hidden": [16], "z_dim": 2, "k_eval": 8, "grad_var_samples": 2, **params})
    vae = FAMILY.build(p, data.info)
    assert isinstance(vae, VAE)
    ctx = LocalContext(epochs=2, batch_size=32)
    FAMILY.fit(vae, data, p, ctx)
    return vae.eval(), ctx


@pytest.mark.parametrize(
    ("dataset", "params", "likelihood"),
    [
        ("digits_bin", {}, "bernoulli"),
        ("digits", {}, "discretized_logistic"),
        ("digits", {"likelihood": "gaussian"}, "gaussian"),
        ("mnist5k_bin", {"architecture": "conv", "channels": 4}, "bernoulli"),
        ("rings8", {"estimator": "reinforce"}, "gaussian"),
        ("digits_bin", {"estimator": "reinforce", "baseline": "mean", "beta": 0.5}, "bernoulli"),
    ],
)
def test_fit_logs_both_elbos_gradient_variance_and_the_test_bound(
    dataset: str, params: dict[str, Any], likelihood: str
) -> None:
    vae, ctx = trained(dataset, **params)
    assert vae.likelihood == likelihood
    first = ctx.history[0][1]
    assert {"elbo", "elbo_3term", "recon", "kl", "val_elbo", "val_bpd", "grad_var"} <= set(first)
    assert first["elbo"] == pytest.approx(first["recon"] - first["kl"])
    assert ("grad_var_reparam" in first) == (params.get("estimator") == "reinforce")
    test = ctx.history[-1][1]
    assert {"test_elbo", "test_iwae_nll", "test_iwae_bpd"} <= set(test)
    assert all(math.isfinite(v) for _, m in ctx.history for v in m.values())
    if likelihood != "gaussian" or dataset.startswith("digits"):  # a probability: ≤ 1
        assert test["test_iwae_nll"] > 0 and test["test_iwae_bpd"] > 0


def test_resume_with_a_learned_reinforce_baseline_continues_exactly() -> None:
    data = tiny("digits_bin")
    p = VAEParams(hidden=[8], z_dim=2, k_eval=2, estimator="reinforce", baseline="learned")
    torch.manual_seed(0)
    straight = FAMILY.build(p, data.info)
    FAMILY.fit(straight, data, p, RecordingContext(epochs=3, batch_size=32))
    torch.manual_seed(0)
    first = FAMILY.build(p, data.info)
    ctx1 = RecordingContext(epochs=2, batch_size=32)
    FAMILY.fit(first, data, p, ctx1)
    resumed = FAMILY.build(p, data.info)
    ctx2 = RecordingContext(epochs=3, batch_size=32, resume=ctx1.checkpoints[-1][1])
    ctx2.set_rng(ctx1.rng[-1])
    FAMILY.fit(resumed, data, p, ctx2)
    assert "baseline.0.weight" in resumed.state_dict()
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


def test_sampling_is_seeded_scaled_by_temperature_and_conditional() -> None:
    sample = FAMILY.capability(Capability.SAMPLE)
    encode = FAMILY.capability(Capability.ENCODE)
    decode = FAMILY.capability(Capability.DECODE)
    vae, _ = trained("digits_bin", conditional=True)
    a = sample(vae, SampleOptions(n=12, seed=5, label=3))
    assert a.shape == (12, 64) and bool(((a >= 0) & (a <= 1)).all())  # Bernoulli means
    assert torch.equal(a, sample(vae, SampleOptions(n=12, seed=5, label=3)))
    z = torch.randn((12, 2), generator=torch.Generator().manual_seed(5))
    cooler = sample(vae, SampleOptions(n=12, seed=5, label=3, temperature=0.5))
    torch.testing.assert_close(cooler, decode(vae, 0.5 * z, torch.full((12,), 3)))
    cycled = sample(vae, SampleOptions(n=12, seed=5))  # classes 0, 1, ..., 9, 0, 1
    torch.testing.assert_close(cycled, decode(vae, z, torch.arange(12) % 10))
    with pytest.raises(OptionError) as err:
        encode(vae, tiny("digits_bin").x_test[:2], None)
    assert err.value.field == "labels"

    plain, _ = trained("digits_bin")
    with pytest.raises(OptionError) as err:
        sample(plain, SampleOptions(n=2, label=1))
    assert err.value.field == "label"


def test_log_prob_is_a_deterministic_bound_that_tightens_with_k() -> None:
    vae, _ = trained("digits_bin")
    log_prob = FAMILY.capability(Capability.LOG_PROB)
    x = tiny("digits_bin").x_test[:20]
    one = log_prob(vae, x, None, 1)
    assert not one.exact and one.k == 1
    torch.testing.assert_close(one.log_prob, log_prob(vae, x, None, 1).log_prob)
    many = log_prob(vae, x, None, 200).log_prob
    assert float(many.mean()) > float(one.log_prob.mean()) and bool((many < 0).all())
