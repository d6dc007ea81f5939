"""The ``boltzmann`` family: W symmetric with a zero diagonal through training, exact
normalisation over all 2^D states, the exact gradient against autograd of the enumerated
log-likelihood, the block Gibbs scan against the unit-by-unit one and its stationary
distribution on 4 units against the exact one, AIS against the enumerated log Z (and the
plain importance sampling it replaced), the pseudo-likelihood, exact draws and seeds, the
refusals, and short fits that lower the NLL."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from app.limits import check_model_size
from app.problems import Problem
from models.boltzmann import (
    AIS_MAX_WORK,
    FAMILY,
    BoltzmannMachine,
    BoltzmannParams,
    ais_work,
    gibbs_sweeps,
    log_z_ais,
)
from models.boltzmann import (
    test_metrics as final_metrics,
)
from models.context import LocalContext
from models.data import DataInfo, Dataset
from models.data.tables import from_arrays
from models.family import Capability
from models.generative import OptionError, SampleOptions
from models.optim import OptimizerSpec
from tests.support.densities import all_binary, binary_info, completion_frequencies


def model(info: DataInfo, seed: int = 0, **params: Any) -> BoltzmannMachine:
    """A machine with random couplings and biases, so the tests see them."""
    module = FAMILY.build(BoltzmannParams(**params), info)
    assert isinstance(module, BoltzmannMachine)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.U.copy_(torch.randn(module.d, module.d, generator=g))
        module.b.copy_(torch.randn(module.d, generator=g))
    return module.eval()


def correlated_bits(d: int, n: int, seed: int) -> torch.Tensor:
    """n binary rows with strong pairwise structure: a shared bit copied with flips."""
    g = torch.Generator().manual_seed(seed)
    shared = (torch.rand(n, 1, generator=g) < 0.5).float()
    flips = (torch.rand(n, d, generator=g) < 0.1).float()
    return (shared + flips) % 2


def bits_dataset(d: int, n: int = 300) -> Dataset:
    def split(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        return correlated_bits(d, rows, seed).numpy(), np.zeros(rows, dtype=np.int64)

    return from_arrays(
        f"bits{d}",
        "classification",
        split(0, n),
        split(1, 100),
        split(2, 100),
        n_classes=2,
        levels=(2, 1.0),
    )


def test_w_is_symmetric_with_a_zero_diagonal_after_training() -> None:
    data = bits_dataset(6)
    params = BoltzmannParams(sampler="exact")
    torch.manual_seed(0)
    module = FAMILY.build(params, data.info)
    assert isinstance(module, BoltzmannMachine)
    FAMILY.fit(module, data, params, LocalContext(epochs=2, batch_size=32))
    W = module.W.detach()
    assert W.abs().sum() > 0
    assert torch.equal(W, W.T)
    assert torch.equal(W.diagonal(), torch.zeros(6))


@pytest.mark.parametrize("d", [1, 5, 9])
def test_exact_probabilities_sum_to_one_over_all_states(d: int) -> None:
    module = model(binary_info(d))
    fn = FAMILY.capability(Capability.LOG_PROB)
    out = fn(module, all_binary(d), None, 1)
    assert out.exact
    total = torch.logsumexp(out.log_prob.double(), 0)
    assert abs(float(total)) < 1e-5


def test_energy_is_the_quadratic_form_with_a_half() -> None:
    """E(x) = −½ xᵀWx − bᵀx with the symmetric W."""
    module = model(binary_info(5))
    x = all_binary(5)
    W, b = module.W.detach(), module.b.detach()
    expected = -0.5 * ((x @ W) * x).sum(1) - x @ b
    torch.testing.assert_close(module.energy(x).detach(), expected, rtol=1e-5, atol=1e-5)


def test_the_exact_gradient_matches_autograd_of_the_enumerated_likelihood() -> None:
    module = model(binary_info(6), seed=3)
    x = correlated_bits(6, 40, seed=4)
    module.exact_nll(x).backward()
    ours = (module.U.grad.clone(), module.b.grad.clone())  # type: ignore[union-attr]
    module.zero_grad()
    # autograd through log Σ_s exp(−E(s)) over every state, float64
    states = all_binary(6).double()
    nll = module.energy(x.double()).mean() + torch.logsumexp(-module.energy(states), 0)
    nll.backward()
    assert module.U.grad is not None and module.b.grad is not None
    torch.testing.assert_close(ours[0], module.U.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours[1], module.b.grad, rtol=1e-4, atol=1e-5)
    assert float(module.U.grad.tril().abs().sum()) == 0.0  # only the upper triangle is read


def test_gibbs_chains_reach_the_exact_distribution_on_four_units() -> None:
    module = model(binary_info(4), seed=1)
    with torch.no_grad():
        module.U.mul_(0.7)
        exact = (-module.energy(all_binary(4)) - module.log_z_exact()).exp().float()
    g = torch.Generator().manual_seed(0)
    start = (torch.rand(20000, 4, generator=g) < 0.5).float()
    drawn = module.gibbs(start, 20, g)
    # all_binary's index reads the first unit as the top bit, as codes does
    tv = 0.5 * float((completion_frequencies(drawn) - exact).abs().sum())
    assert tv < 0.05, tv


def scan_unit_by_unit(u: Tensor, W: Tensor, b: Tensor, sweeps: int, g: torch.Generator) -> Tensor:
    """The definition: unit i = 1..D in turn set to [ν_i < σ(b_i + Σ_j W_ij u_j)]."""
    u = u.clone()
    for _ in range(sweeps):
        nu = torch.rand(u.shape, generator=g, dtype=u.dtype)
        for i in range(u.shape[1]):
            u[:, i] = (nu[:, i] < torch.sigmoid(b[i] + u @ W[:, i])).to(u.dtype)
    return u


@pytest.mark.parametrize(("d", "scale"), [(5, 2.0), (45, 1.0), (70, 0.3)])
def test_the_block_scan_makes_the_unit_by_unit_draws(d: int, scale: float) -> None:
    """Blocks of 32 resolved as fixed points: the same states as the sequential scan from
    the same noise (one block, a partial last one; strong couplings, so a block's draws
    depend on each other)."""
    g = torch.Generator().manual_seed(d)
    upper = (torch.randn(d, d, generator=g, dtype=torch.float64) * scale).triu(1)
    W, b = upper + upper.T, torch.randn(d, generator=g, dtype=torch.float64)
    start = (torch.rand(50, d, generator=g) < 0.5).double()
    ours = gibbs_sweeps(start, W, b, 3, torch.Generator().manual_seed(1))
    reference = scan_unit_by_unit(start, W, b, 3, torch.Generator().manual_seed(1))
    assert torch.equal(ours, reference)
    assert not torch.equal(ours, start)


def ferromagnet(d: int, j: float) -> BoltzmannMachine:
    """W_ij = j, b_i = −j (d − 1)/2: E(0) = E(1) = 0, every mixed state higher; two sharp
    modes at the all-zero and all-one states, the marginals ½."""
    module = FAMILY.build(BoltzmannParams(), binary_info(d))
    assert isinstance(module, BoltzmannMachine)
    with torch.no_grad():
        module.U.fill_(j)
        module.b.fill_(-j * (d - 1) / 2)
    return module


def log_z_importance(module: BoltzmannMachine, k: int, seed: int) -> tuple[float, float]:
    """The estimate AIS replaced: log mean exp(−E(x)) / q(x), x ~ independent Bernoulli(½)
    (the marginals), with its delta-method standard error."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(k, module.d, generator=g, dtype=torch.float64) < 0.5).double()
    w = -module.energy(x) + module.d * math.log(2)
    r = (w - w.max()).exp()
    return float(torch.logsumexp(w, 0)) - math.log(k), float(r.std() / (math.sqrt(k) * r.mean()))


def test_ais_is_within_its_error_bar_of_the_exact_log_z_where_importance_sampling_is_not() -> None:
    """A sharp two-mode machine on 14 units: AIS (200 temperatures, seed 0) within 3 standard
    errors of the enumerated log Z at 50 and 800 runs, its error ≥ 2× smaller with 16× the
    runs; plain importance sampling from the marginals with 1,000 draws (what log Z was
    before) misses by over 2 nats, far outside its own error bar: its draws almost never
    reach the modes."""
    module = ferromagnet(14, 1.5)
    with torch.no_grad():
        exact = float(module.log_z_exact())
    base = torch.zeros(14)  # the marginals, ½: logits 0
    errors = []
    for runs in (50, 800):
        gen = torch.Generator().manual_seed(0)
        log_z, stderr = log_z_ais(module.W, module.b, base, runs, 200, gen)
        assert abs(log_z - exact) < 3 * stderr, (runs, log_z, stderr, exact)
        errors.append(stderr)
    assert errors[1] < errors[0] / 2, errors
    with torch.no_grad():
        plain, plain_stderr = log_z_importance(module, 1000, seed=0)
    assert abs(plain - exact) > 2.0 and abs(plain - exact) > 3 * plain_stderr, (plain, exact)


def test_the_pseudo_likelihood_is_the_conditionals_of_the_enumerated_p() -> None:
    """−Σ_i log p(x_i | x_−i), each conditional from the joint over the two values of x_i."""
    module = model(binary_info(5), seed=4)
    x = all_binary(5).double()
    with torch.no_grad():
        expected = torch.zeros(len(x), dtype=torch.float64)
        for i in range(5):
            flipped = x.clone()
            flipped[:, i] = 1 - flipped[:, i]
            expected -= torch.log_softmax(
                torch.stack([-module.energy(x), -module.energy(flipped)]), 0
            )[0]
        torch.testing.assert_close(module.pseudo_nll(x), expected)


def test_exact_samples_follow_the_distribution_and_the_seed() -> None:
    module = model(binary_info(4), seed=2)
    fn = FAMILY.capability(Capability.SAMPLE)
    a = fn(module, SampleOptions(n=20000, seed=5))
    assert torch.equal(a, fn(module, SampleOptions(n=20000, seed=5)))
    assert not torch.equal(a, fn(module, SampleOptions(n=20000, seed=6)))
    with torch.no_grad():
        exact = (-module.energy(all_binary(4)) - module.log_z_exact()).exp().float()
    tv = 0.5 * float((completion_frequencies(a) - exact).abs().sum())
    assert tv < 0.03, tv


def test_gibbs_samples_on_many_units_keep_the_seed() -> None:
    module = model(binary_info(30), gibbs_steps=3)
    fn = FAMILY.capability(Capability.SAMPLE)
    a = fn(module, SampleOptions(n=7, seed=1))
    assert a.shape == (7, 30) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, fn(module, SampleOptions(n=7, seed=1)))
    with pytest.raises(OptionError) as refused:
        fn(module, SampleOptions(n=7, max_rows=6))
    assert refused.value.field == "n"
    with pytest.raises(OptionError) as refused:
        fn(module, SampleOptions(n=7, temperature=2.0))
    assert refused.value.field == "temperature"


def test_exact_on_more_than_twenty_units_is_refused_at_build() -> None:
    with pytest.raises(ValueError, match=r"params\.sampler"):
        FAMILY.build(BoltzmannParams(sampler="exact"), binary_info(21))
    FAMILY.build(BoltzmannParams(sampler="exact"), binary_info(20))


def test_above_twenty_units_log_prob_is_an_ais_estimate_kept_with_the_model() -> None:
    module = model(binary_info(21), ais_runs=200, ais_betas=100)
    with torch.no_grad():
        module.U.mul_(0.3)
    x = correlated_bits(21, 5, seed=0)
    fn = FAMILY.capability(Capability.LOG_PROB)
    out = fn(module, x, None, 7)
    assert not out.exact and out.k == 200  # the AIS runs; the request's k is unused
    with torch.no_grad():
        truth = -module.energy(x.double()) - module.log_z_exact()
    stderr = float(module.log_z_stderr)
    assert 0 < stderr < 0.05
    error = float((out.log_prob.double() - truth).abs().max())
    assert error < 3 * stderr + 1e-4, (error, stderr)  # float32 answers
    # the estimate is kept: later requests (and other chunks) use it, not a new one
    with torch.no_grad():
        module.b.add_(1.0)
    again = fn(module, x, None, 7).log_prob  # −E(x) grew by Σ_i x_i; log Z did not move
    torch.testing.assert_close(again, out.log_prob + x.sum(1))
    info = binary_info(21)
    assert FAMILY.likelihood is not None
    assert FAMILY.likelihood.kind_for(info, BoltzmannParams()) == "estimate"
    assert FAMILY.likelihood.kind_for(binary_info(20), BoltzmannParams()) == "exact"


def test_ais_work_over_the_bound_is_refused_at_build_as_a_422_naming_params() -> None:
    """784 units: runs × temperatures × D × (2D + 32²) multiply-adds at most 1e11; at the
    bound it builds, one run over it is refused (a 422 at ``params`` through the API's
    check), and enumerable machines never anneal, so any AIS settings build."""
    info = binary_info(784)
    betas = 500
    runs = AIS_MAX_WORK // ais_work(784, 1, betas)
    FAMILY.build(BoltzmannParams(ais_runs=runs, ais_betas=betas), info)
    too_many = BoltzmannParams(ais_runs=runs + 1, ais_betas=betas)
    with pytest.raises(ValueError, match=r"params\.ais_runs"):
        FAMILY.build(too_many, info)
    with pytest.raises(Problem) as refused:
        check_model_size("boltzmann", info, too_many)
    assert refused.value.status == 422 and refused.value.extra["errors"][0]["path"] == "params"
    assert "ais_runs" in refused.value.detail
    FAMILY.build(BoltzmannParams(), info)  # the defaults fit
    FAMILY.build(BoltzmannParams(ais_runs=100_000, ais_betas=1_000_000), binary_info(20))


def test_log_prob_refuses_non_binary_inputs() -> None:
    module = model(binary_info(3))
    with pytest.raises(OptionError) as refused:
        FAMILY.capability(Capability.LOG_PROB)(module, torch.full((1, 3), 0.5), None, 1)
    assert refused.value.field == "inputs"


@pytest.mark.parametrize("sampler", ["exact", "gibbs", "pcd"])
def test_a_short_fit_lowers_the_exact_nll(sampler: str) -> None:
    data = bits_dataset(8)
    params = BoltzmannParams(sampler=sampler, chains=64, gibbs_steps=2)  # type: ignore[arg-type]
    torch.manual_seed(0)
    module = FAMILY.build(params, data.info)
    assert isinstance(module, BoltzmannMachine)
    before = final_metrics(module, data)["test_nll"]
    ctx = LocalContext(epochs=15, batch_size=32, optimizer=OptimizerSpec(lr=0.05))
    FAMILY.fit(module, data, params, ctx)
    ((_, after),) = ctx.metric("test_nll")
    assert after < before - 1.0, (before, after)
    ((_, se),) = ctx.metric("test_nll_stderr")
    assert se == 0.0  # 8 units: exact


def test_a_fit_on_more_than_twenty_units_reports_the_ais_estimate() -> None:
    """24 units: validation by the pseudo-likelihood (no log Z each epoch), the final test
    NLL with an AIS log Z, its standard error and runs, kept in the module and in the
    served checkpoint."""
    data = bits_dataset(24, n=64)
    params = BoltzmannParams(sampler="pcd", chains=16, ais_runs=8, ais_betas=20)
    torch.manual_seed(0)
    module = FAMILY.build(params, data.info)
    assert isinstance(module, BoltzmannMachine)
    ctx = LocalContext(epochs=2, batch_size=32)
    FAMILY.fit(module, data, params, ctx)
    assert ctx.metric("val_pseudo_nll") and not ctx.metric("val_nll")
    ((_, se),) = ctx.metric("test_nll_stderr")
    ((_, runs),) = ctx.metric("test_ais_runs")
    ((_, log_z),) = ctx.metric("test_log_z")
    assert se > 0 and runs == 8 and log_z == float(module.log_z)
    served = ctx.best_model()  # the served checkpoint keeps the final test's log Z
    assert served is not None and float(served["log_z"]) == log_z
    assert float(served["log_z_stderr"]) == se
