"""The ``made`` family: the autoregressive property of every mask (by the Jacobian), exact
normalisation (all 2⁹ binary 3×3 images; a mixture density on a 2-D grid), sequential
sampling against the model's own probabilities, and a tiny fit."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch.autograd.functional import jacobian

from models.autoregressive import evaluate
from models.context import LocalContext
from models.data import DataInfo, load
from models.family import Capability, Unsupported
from models.generative import OptionError, SampleOptions
from models.made import FAMILY, MADEModel, MADEParams
from tests.support.data import tiny
from tests.support.densities import (
    all_binary,
    binary_info,
    completion_frequencies,
    conditional_by_enumeration,
    independent_bernoulli_nll,
    real_info,
)


def model(info: DataInfo, **params: Any) -> MADEModel:
    torch.manual_seed(0)
    module = FAMILY.build(MADEParams(**params), info)
    assert isinstance(module, MADEModel)
    return module.eval()


@pytest.mark.parametrize("order", ["natural", "random"])
@pytest.mark.parametrize(
    ("likelihood", "info"), [("bernoulli", binary_info(6)), ("mog", real_info(6))]
)
def test_every_mask_is_autoregressive(order: str, likelihood: str, info: DataInfo) -> None:
    """d out_i / d x_l = 0 unless x_l comes before x_i in the mask's order, for each of the
    masks; the last dimension in the order does depend on the others."""
    num_masks = 4
    module = model(
        info,
        hidden=[32, 32],
        activation="tanh",
        order=order,
        num_masks=num_masks,
        likelihood=likelihood,
        components=2,
    )
    x = torch.rand(6)
    orders = set()
    for m in range(num_masks):
        module.use_mask(m)
        order_m = module.order_of(m)
        orders.add(tuple(order_m.tolist()))
        jac = jacobian(lambda v: module.made.outputs(v[None])[0], x)  # (k, D, D)
        assert jac.shape == (module.k, 6, 6)
        allowed = order_m[None, :] < order_m[:, None]  # [i, l]: x_l before x_i
        assert bool((jac[:, ~allowed] == 0).all()), f"mask {m} leaks"
        last = int(torch.argmax(order_m))
        assert bool((jac[:, last].abs().sum(0) > 0).any())
    assert len(orders) == (num_masks if order == "random" else 1)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"order": "random", "num_masks": 3, "inference_masks": 3},
        {"num_masks": 4, "inference_masks": 2},
    ],
)
def test_binary_probabilities_sum_to_one(params: dict[str, Any]) -> None:
    """Σ over all 2⁹ binary 3×3 images of P(x) = 1, one mask or averaged over several."""
    module = model(binary_info(9), hidden=[16], **params)
    with torch.no_grad():
        log_p = module.log_prob(all_binary(9))
    assert log_p.shape == (512,) and bool((log_p < 0).all())
    torch.testing.assert_close(torch.logsumexp(log_p, 0), torch.tensor(0.0), atol=1e-5, rtol=0)


def test_the_capability_is_exact_and_refuses_non_binary_inputs() -> None:
    module = model(binary_info(9), hidden=[16])
    x = all_binary(9)[:7]
    log_prob = FAMILY.capability(Capability.LOG_PROB)
    out = log_prob(module, x, None, 1)
    assert out.exact and out.k is None
    with torch.no_grad():
        torch.testing.assert_close(out.log_prob, module.log_prob(x))
    with pytest.raises(OptionError, match="binary"):
        log_prob(module, x * 0.5, None, 1)
    with pytest.raises(OptionError):
        log_prob(module, x, torch.zeros(7, dtype=torch.long), 1)


def test_mixture_density_integrates_to_one() -> None:
    """A mixture-of-Gaussians MADE on standardised 2-D data: ∫∫ p(x) dx ≈ 1 (trapezoid)."""
    module = model(real_info(2), hidden=[16], components=3, num_masks=2, inference_masks=2)
    module.shift.copy_(torch.tensor([0.5, -0.2]))
    module.scale.copy_(torch.tensor([1.5, 0.7]))
    a = torch.linspace(-20.0, 20.0, 801)
    b = torch.linspace(-10.0, 10.0, 801)
    grid = torch.cartesian_prod(a, b)
    with torch.no_grad():
        p = module.log_prob(grid).exp().view(len(a), len(b))
    total = torch.trapezoid(torch.trapezoid(p, b, dim=1), a)
    assert abs(float(total) - 1.0) < 1e-2


def test_sampling_is_seeded_and_binary() -> None:
    module = model(binary_info(9), hidden=[16], order="random", num_masks=3, inference_masks=3)
    fn = FAMILY.capability(Capability.SAMPLE)
    a = fn(module, SampleOptions(n=50, seed=3))
    assert a.shape == (50, 9) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, fn(module, SampleOptions(n=50, seed=3)))
    assert not torch.equal(a, fn(module, SampleOptions(n=50, seed=4)))
    with pytest.raises(OptionError, match="unconditional"):
        fn(module, SampleOptions(n=2, label=1))
    cold = fn(module, SampleOptions(n=50, seed=3, temperature=0.01))
    assert set(cold.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("params", [{}, {"order": "random", "num_masks": 2, "inference_masks": 2}])
def test_samples_follow_the_model_probabilities(params: dict[str, Any]) -> None:
    """Sequential sampling (in each mask's order, masks drawn uniformly) draws each of the
    2³ binary vectors as often as exp(log_prob) says."""
    module = model(binary_info(3), hidden=[16], **params)
    n = 40_000
    drawn = module.sample(n, 1.0, torch.Generator().manual_seed(0))
    codes = (drawn * torch.tensor([4.0, 2.0, 1.0])).sum(1).long()
    freq = torch.bincount(codes, minlength=8).float() / n
    with torch.no_grad():
        p = module.log_prob(all_binary(3)).exp()
    torch.testing.assert_close(freq, p, atol=0.015, rtol=0)


def test_mixture_samples_are_seeded_and_temperature_narrows_them() -> None:
    module = model(real_info(2), hidden=[16], components=3)
    fn = FAMILY.capability(Capability.SAMPLE)
    a = fn(module, SampleOptions(n=400, seed=1))
    assert a.shape == (400, 2) and bool(torch.isfinite(a).all())
    assert torch.equal(a, fn(module, SampleOptions(n=400, seed=1)))
    cold = fn(module, SampleOptions(n=400, seed=1, temperature=0.1))
    assert float(cold.var(0).sum()) < float(a.var(0).sum())


def test_likelihood_must_suit_the_data() -> None:
    assert model(load("moons").info).likelihood == "mog"
    assert model(load("digits_bin").info).likelihood == "bernoulli"
    with pytest.raises(ValueError, match="bernoulli needs binary data"):
        FAMILY.build(MADEParams(likelihood="bernoulli"), load("moons").info)
    with pytest.raises(ValueError, match="mog needs real-valued data"):
        FAMILY.build(MADEParams(likelihood="mog"), load("digits_bin").info)
    with pytest.raises(ValueError, match="neither"):
        FAMILY.build(MADEParams(), load("digits").info)
    with pytest.raises(ValidationError, match="inference_masks"):
        MADEParams(num_masks=2, inference_masks=3)


@pytest.mark.parametrize("num_masks", [1, 3])
def test_a_tiny_fit_lowers_the_test_nll(num_masks: int) -> None:
    data = tiny("digits_bin", n_train=256, n_eval=64)
    module = model(data.info, hidden=[64], num_masks=num_masks, inference_masks=num_masks)
    with torch.no_grad():
        before = evaluate(module, data, "test")["test_nll"]
    ctx = LocalContext(epochs=5, batch_size=32)
    params = MADEParams(hidden=[64], num_masks=num_masks, inference_masks=num_masks)
    FAMILY.fit(module, data, params, ctx)
    ((_, after),) = ctx.metric("test_nll")
    assert after < before - 2.0
    assert int(module.step) == 5 * math.ceil(256 / 32)


def test_concurrent_requests_on_one_module_see_their_own_masks() -> None:
    """The API serves one cached module to many threads; a multi-mask model rewrites its
    masks per mask, so log p and samples computed concurrently equal the serial ones."""
    m = model(binary_info(9), hidden=[16], order="random", num_masks=4, inference_masks=4)
    x = all_binary(9)
    expected = m.log_prob(x)
    drawn = m.sample(32, 1.0, torch.Generator().manual_seed(3))
    with ThreadPoolExecutor(4) as pool:
        logs = list(pool.map(lambda _: m.log_prob(x), range(16)))
        samples = list(
            pool.map(lambda _: m.sample(32, 1.0, torch.Generator().manual_seed(3)), range(16))
        )
    assert all(torch.equal(lp, expected) for lp in logs)
    assert all(torch.equal(s, drawn) for s in samples)


def test_sampling_counts_one_forward_per_dimension_against_the_bound() -> None:
    """The API bounds work by forward rows; a MADE sample costs D passes, so n samples
    over the bound are refused at ``n`` before any pass."""
    module = model(binary_info(9), hidden=[16])
    fn = FAMILY.capability(Capability.SAMPLE)
    assert fn(module, SampleOptions(n=10, max_rows=90)).shape == (10, 9)
    with pytest.raises(OptionError, match="take 99 forward rows") as refused:
        fn(module, SampleOptions(n=11, max_rows=90))
    assert refused.value.field == "n" and "at most 10" in str(refused.value)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"num_masks": 3, "inference_masks": 3},
        {"order": "random"},
        {"order": "random", "num_masks": 3, "inference_masks": 3},
    ],
)
def test_receptive_field_is_exactly_the_inputs_before_in_some_mask(params: dict[str, Any]) -> None:
    """Input j influences dimension k's conditional iff j comes before k in the order of
    one of the inference masks (natural: exactly j < k); zero elsewhere, k included."""
    module = model(binary_info(6), hidden=[32], activation="tanh", **params)
    fn = FAMILY.capability(Capability.RECEPTIVE_FIELD)
    positions = module.positions()
    for k in range(6):
        with torch.inference_mode():  # as the API calls it
            field = fn(module, k)
        assert field.shape == (6,) and bool((field >= 0).all())
        expected = torch.stack([pos < pos[k] for pos in positions]).any(0)
        assert torch.equal(field > 0, expected), (k, field)
    if "order" not in params:
        assert torch.equal(fn(module, 3) > 0, torch.arange(6) < 3)
    with pytest.raises(OptionError):
        fn(module, 6)


@pytest.mark.parametrize(
    ("params", "given"),
    [
        ({}, [1.0, float("nan"), float("nan")]),
        ({}, [0.0, 1.0, float("nan")]),
        ({"num_masks": 2, "inference_masks": 2}, [1.0, 1.0, float("nan")]),
        ({"num_masks": 2, "inference_masks": 2}, [float("nan")] * 3),
    ],
)
def test_completions_follow_the_exact_conditional(
    params: dict[str, Any], given: list[float]
) -> None:
    """Order natural, the first bits observed: the completions of 3 binary dimensions
    are drawn as often as p(x_unobserved | x_observed) says, enumerated from log_prob
    (several masks: each row's mask from its posterior, so the averaged model's; weights
    scaled up so the conditionals, and the masks' posterior, are far from uniform: a
    uniform mask would be off by 0.037 here)."""
    module = model(binary_info(3), hidden=[16], **params)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(5.0)
    target = torch.tensor(given)
    observed = ~torch.isnan(target)
    n = 40_000
    x = torch.nan_to_num(target).expand(n, 3)
    fn = FAMILY.capability(Capability.COMPLETE)
    drawn = fn(module, x, observed, SampleOptions(n=n, seed=0))
    assert torch.equal(drawn[:, observed], x[:, observed])
    with torch.no_grad():
        expected = conditional_by_enumeration(module.log_prob(all_binary(3)), target)
    torch.testing.assert_close(completion_frequencies(drawn), expected, atol=0.01, rtol=0)


def test_completion_in_a_random_order_is_refused_unless_the_observed_come_first() -> None:
    """A random order puts some observed bits after unobserved ones: an exact completion
    would marginalise them, so it is refused (Unsupported, the API's 409) naming order
    natural; an observed set that is a prefix of every mask's order completes."""
    module = model(binary_info(6), hidden=[16], order="random", num_masks=2, inference_masks=2)
    fn = FAMILY.capability(Capability.COMPLETE)
    x = torch.ones(4, 6)
    top = torch.arange(6) < 3
    with pytest.raises(Unsupported, match="order natural"):
        fn(module, x, top, SampleOptions(n=4))
    nothing = torch.zeros(6, dtype=torch.bool)
    assert fn(module, x, nothing, SampleOptions(n=4)).shape == (4, 6)
    assert torch.equal(fn(module, x, ~nothing, SampleOptions(n=4)), x)


def test_completion_options_and_its_bound_on_work() -> None:
    """One forward per drawn dimension, plus one per mask to weigh them, over the rows:
    over ``max_rows`` a 422 at ``n`` before any pass; label and temperature refused."""
    module = model(binary_info(6), hidden=[16], num_masks=2, inference_masks=2)
    fn = FAMILY.capability(Capability.COMPLETE)
    x, top = torch.ones(5, 6), torch.arange(6) < 2
    cost = 5 * 4 + 5 * 2
    assert module.complete_rows(5, 4) == cost
    assert fn(module, x, top, SampleOptions(n=5, max_rows=cost)).shape == (5, 6)
    with pytest.raises(OptionError, match=f"takes {cost} forward rows") as refused:
        fn(module, x, top, SampleOptions(n=5, max_rows=cost - 1))
    assert refused.value.field == "n"
    for opts, field in (
        (SampleOptions(n=5, label=1), "label"),
        (SampleOptions(n=5, temperature=0), "temperature"),
    ):
        with pytest.raises(OptionError) as err:
            fn(module, x, top, opts)
        assert err.value.field == field
    with pytest.raises(OptionError, match="binary") as err:
        fn(module, x * 0.5, top, SampleOptions(n=5))
    assert err.value.field == "inputs"


def test_log_prob_counts_a_pass_per_inference_mask() -> None:
    assert FAMILY.log_prob_passes is not None
    module = model(binary_info(6), hidden=[16], num_masks=5, inference_masks=4)
    assert FAMILY.log_prob_passes(module) == 4


@pytest.mark.slow
def test_a_short_fit_on_digits_bin_beats_independent_pixels_by_far() -> None:
    """100 epochs on digits_bin (a few seconds on one core): the test NLL was 17.9 nats
    (seeds 0 to 2) against 24.4 for independent Bernoulli pixels fitted on the same
    training split; asserted at least 4.5 nats below."""
    data = load("digits_bin")
    baseline = independent_bernoulli_nll(data.x_train, data.x_test)
    params = MADEParams(hidden=[200])
    ctx = LocalContext(epochs=100, batch_size=64, seed=0)  # seeds the initial weights too
    module = FAMILY.build(params, data.info)
    FAMILY.fit(module, data, params, ctx)
    ((_, nll),) = ctx.metric("test_nll")
    assert nll < baseline - 4.5, (nll, baseline)
