"""The ``boltzmann`` family: W symmetric with a zero diagonal through training, exact
normalisation over all 2^D states, the exact gradient against autograd of the enumerated
log-likelihood, the Gibbs sampler's stationary distribution on 4 units against the exact
one, exact draws and seeds, the refusals, and short fits that lower the NLL."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from models.boltzmann import FAMILY, BoltzmannMachine, BoltzmannParams, evaluate
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
        exact = (-module.energy(all_binary(4)) - module.log_z()).exp().float()
    g = torch.Generator().manual_seed(0)
    start = (torch.rand(20000, 4, generator=g) < 0.5).float()
    drawn = module.gibbs(start, 20, g)
    # all_binary's index reads the first unit as the top bit, as codes does
    tv = 0.5 * float((completion_frequencies(drawn) - exact).abs().sum())
    assert tv < 0.05, tv


def test_exact_samples_follow_the_distribution_and_the_seed() -> None:
    module = model(binary_info(4), seed=2)
    fn = FAMILY.capability(Capability.SAMPLE)
    a = fn(module, SampleOptions(n=20000, seed=5))
    assert torch.equal(a, fn(module, SampleOptions(n=20000, seed=5)))
    assert not torch.equal(a, fn(module, SampleOptions(n=20000, seed=6)))
    with torch.no_grad():
        exact = (-module.energy(all_binary(4)) - module.log_z()).exp().float()
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


def test_above_twenty_units_log_prob_says_it_is_an_estimate() -> None:
    module = model(binary_info(21))
    with torch.no_grad():
        module.U.mul_(0.05)
        module.b.mul_(0.3)
    x = correlated_bits(21, 5, seed=0)
    out = FAMILY.capability(Capability.LOG_PROB)(module, x, None, 4000)
    assert not out.exact and out.k == 4000
    # an importance-sampling estimate of a weakly coupled machine is close to the truth
    with torch.no_grad():
        truth = -module.energy(x.double()) - module.log_z()
    assert float((out.log_prob.double() - truth).abs().max()) < 0.1
    info = binary_info(21)
    assert FAMILY.likelihood is not None
    assert FAMILY.likelihood.kind_for(info, BoltzmannParams()) == "estimate"
    assert FAMILY.likelihood.kind_for(binary_info(20), BoltzmannParams()) == "exact"


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
    before = evaluate(module, data, "test")["test_nll"]
    ctx = LocalContext(epochs=15, batch_size=32, optimizer=OptimizerSpec(lr=0.05))
    FAMILY.fit(module, data, params, ctx)
    ((_, after),) = ctx.metric("test_nll")
    assert after < before - 1.0, (before, after)
    ((_, se),) = ctx.metric("test_nll_stderr")
    assert se == 0.0  # 8 units: exact
