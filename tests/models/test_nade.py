"""The ``nade`` family: the O(DH) running-sum forward against a naive per-dimension one,
the autoregressive property (by the Jacobian), exact normalisation (all 2⁹ binary 3×3
images; a mixture density on a 2-D grid), sequential sampling against the model's own
probabilities, and a tiny fit."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch.autograd.functional import jacobian

from models.autoregressive import AutoregressiveDensity, evaluate
from models.context import LocalContext
from models.data import DataInfo, load
from models.family import Capability, Unsupported
from models.generative import OptionError, SampleOptions
from models.nade import FAMILY, NADEModel, NADEParams
from tests.support.data import tiny
from tests.support.densities import (
    all_binary,
    binary_info,
    completion_frequencies,
    conditional_by_enumeration,
    independent_bernoulli_nll,
    real_info,
)


def model(info: DataInfo, **params: Any) -> NADEModel:
    torch.manual_seed(0)
    module = FAMILY.build(NADEParams(**params), info)
    assert isinstance(module, NADEModel)
    with torch.no_grad():  # non-zero biases, so the tests see them
        module.c.normal_()
        module.b.normal_()
    return module.eval()


def naive_outputs(m: NADEModel, u: torch.Tensor) -> torch.Tensor:
    """(B, k, D) from scratch per dimension: h = act(c + W[:, o_<d] u_<d), out = V h + b."""
    out = torch.zeros(len(u), m.k, m.d)
    perm = m.perm.tolist()
    for pos, i in enumerate(perm):
        before = perm[:pos]
        a = m.c + u[:, before] @ m.W[:, before].T
        out[:, :, i] = m.act(a) @ m.V[i].T + m.b[i]
    return out


CASES = [
    ("bernoulli", binary_info(7), "sigmoid"),
    ("mog", real_info(7), "sigmoid"),
    ("bernoulli", binary_info(7), "relu"),
]


@pytest.mark.parametrize("order", ["natural", "random"])
@pytest.mark.parametrize(("likelihood", "info", "activation"), CASES)
def test_running_sum_equals_the_naive_forward(
    order: str, likelihood: str, info: DataInfo, activation: str
) -> None:
    module = model(
        info, hidden=16, order=order, likelihood=likelihood, activation=activation, components=2
    )
    u = torch.rand(5, 7)
    if likelihood == "bernoulli":
        u = u.round()
    with torch.no_grad():
        torch.testing.assert_close(module.outputs(u), naive_outputs(module, u))
    if order == "random":
        assert not torch.equal(module.perm, torch.arange(7))
        again = model(info, hidden=16, order=order, likelihood=likelihood, components=2)
        assert torch.equal(again.perm, module.perm)  # seed 0: the same order every build


@pytest.mark.parametrize("order", ["natural", "random"])
@pytest.mark.parametrize(
    ("likelihood", "info"), [("bernoulli", binary_info(6)), ("mog", real_info(6))]
)
def test_the_outputs_are_autoregressive(order: str, likelihood: str, info: DataInfo) -> None:
    """d out_i / d x_l = 0 unless x_l comes before x_i in the order; the last dimension in
    the order depends on all the others."""
    module = model(info, hidden=32, order=order, likelihood=likelihood, components=2)
    position = torch.argsort(module.perm)  # position[i]: where dimension i comes
    x = torch.rand(6)
    jac = jacobian(lambda v: module.outputs(v[None])[0], x)  # (k, D, D)
    assert jac.shape == (module.k, 6, 6)
    allowed = position[None, :] < position[:, None]  # [i, l]: x_l before x_i
    assert bool((jac[:, ~allowed] == 0).all())
    last = int(module.perm[-1])
    others = [i for i in range(6) if i != last]
    assert bool((jac[:, last, others].abs().sum(0) > 0).all())


@pytest.mark.parametrize("params", [{}, {"order": "random"}, {"activation": "relu"}])
def test_binary_probabilities_sum_to_one(params: dict[str, Any]) -> None:
    """Σ over all 2⁹ binary 3×3 images of P(x) = 1."""
    module = model(binary_info(9), hidden=16, **params)
    with torch.no_grad():
        log_p = module.log_prob(all_binary(9))
    assert log_p.shape == (512,) and bool((log_p < 0).all())
    torch.testing.assert_close(torch.logsumexp(log_p, 0), torch.tensor(0.0), atol=1e-5, rtol=0)


def test_the_capability_is_exact_and_refuses_non_binary_inputs() -> None:
    module = model(binary_info(9), hidden=16)
    x = all_binary(9)[:7]
    log_prob = FAMILY.capability(Capability.LOG_PROB)
    out = log_prob(module, x, None, 1)
    assert out.exact and out.k is None
    with torch.no_grad():
        torch.testing.assert_close(out.log_prob, module.log_prob(x))
    with pytest.raises(OptionError, match="binary") as err:
        log_prob(module, x * 0.5, None, 1)
    assert err.value.field == "inputs"
    with pytest.raises(OptionError):
        log_prob(module, x, torch.zeros(7, dtype=torch.long), 1)


@pytest.mark.parametrize("order", ["natural", "random"])
def test_mixture_density_integrates_to_one(order: str) -> None:
    """An RNADE on standardised 2-D data: ∫∫ p(x) dx ≈ 1 (trapezoid), the standardisation's
    log-Jacobian counted."""
    module = model(real_info(2), hidden=16, components=3, order=order)
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
    module = model(binary_info(9), hidden=16, order="random")
    fn = FAMILY.capability(Capability.SAMPLE)
    a = fn(module, SampleOptions(n=50, seed=3))
    assert a.shape == (50, 9) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, fn(module, SampleOptions(n=50, seed=3)))
    assert not torch.equal(a, fn(module, SampleOptions(n=50, seed=4)))
    with pytest.raises(OptionError, match="unconditional") as err:
        fn(module, SampleOptions(n=2, label=1))
    assert err.value.field == "label"
    cold = fn(module, SampleOptions(n=50, seed=3, temperature=0.01))
    assert set(cold.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(OptionError) as err:
        fn(module, SampleOptions(n=2, temperature=0.0))
    assert err.value.field == "temperature"


@pytest.mark.parametrize("params", [{}, {"order": "random"}])
def test_samples_follow_the_model_probabilities(params: dict[str, Any]) -> None:
    """Sequential sampling (the running sum updated per drawn bit) draws each of the 2³
    binary vectors as often as exp(log_prob) says."""
    module = model(binary_info(3), hidden=16, **params)
    n = 40_000
    drawn = module.sample(n, 1.0, torch.Generator().manual_seed(0))
    codes = (drawn * torch.tensor([4.0, 2.0, 1.0])).sum(1).long()
    freq = torch.bincount(codes, minlength=8).float() / n
    with torch.no_grad():
        p = module.log_prob(all_binary(3)).exp()
    torch.testing.assert_close(freq, p, atol=0.015, rtol=0)


def test_mixture_samples_are_seeded_and_temperature_narrows_them() -> None:
    module = model(real_info(2), hidden=16, components=3)
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
        FAMILY.build(NADEParams(likelihood="bernoulli"), load("moons").info)
    with pytest.raises(ValueError, match="mog needs real-valued data"):
        FAMILY.build(NADEParams(likelihood="mog"), load("digits_bin").info)
    with pytest.raises(ValueError, match="neither"):
        FAMILY.build(NADEParams(), load("digits").info)
    with pytest.raises(ValidationError):
        NADEParams(hidden=0)
    with pytest.raises(ValidationError):
        NADEParams(activation="tanh")  # type: ignore[arg-type]


def test_a_tiny_fit_lowers_the_test_nll() -> None:
    data = tiny("digits_bin", n_train=256, n_eval=64)
    module = model(data.info, hidden=64)
    before = evaluate(module, data, "test")["test_nll"]
    ctx = LocalContext(epochs=5, batch_size=32)
    FAMILY.fit(module, data, NADEParams(hidden=64), ctx)
    ((_, after),) = ctx.metric("test_nll")
    assert after < before - 2.0
    assert ctx.metric("test_loss") and ctx.metric("test_bits_per_dim")


def test_sampling_costs_one_forward_against_the_bound() -> None:
    """NADE's running sum makes a whole sequential sample cost about one forward row."""
    module = model(binary_info(9), hidden=8)
    fn = FAMILY.capability(Capability.SAMPLE)
    assert fn(module, SampleOptions(n=90, max_rows=90)).shape == (90, 9)
    with pytest.raises(OptionError) as refused:
        fn(module, SampleOptions(n=91, max_rows=90))
    assert refused.value.field == "n"


@pytest.mark.parametrize("order", ["natural", "random"])
def test_receptive_field_is_exactly_the_inputs_before(order: str) -> None:
    """Input j influences dimension k's conditional iff j comes before k in the order
    (natural: exactly j < k); zero elsewhere, k included."""
    module = model(binary_info(7), hidden=16, order=order)
    fn = FAMILY.capability(Capability.RECEPTIVE_FIELD)
    (pos,) = module.positions()
    for k in range(7):
        with torch.inference_mode():  # as the API calls it
            field = fn(module, k)
        assert field.shape == (7,) and bool((field >= 0).all())
        assert torch.equal(field > 0, pos < pos[k]), (k, field)
        if order == "natural":
            assert torch.equal(field > 0, torch.arange(7) < k)


@pytest.mark.parametrize(
    "given", [[1.0, float("nan"), float("nan")], [0.0, 1.0, float("nan")], [float("nan")] * 3]
)
def test_completions_follow_the_exact_conditional(given: list[float]) -> None:
    """Order natural, the first bits observed: the completions of 3 binary dimensions (the
    running sum started from the observed ones) are drawn as often as
    p(x_unobserved | x_observed) says, enumerated from log_prob."""
    module = model(binary_info(3), hidden=16)
    with torch.no_grad():  # sharper conditionals, so a wrong rule shows
        for p in module.parameters():
            p.mul_(3.0)
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


def test_the_running_sum_completion_equals_the_generic_one() -> None:
    """NADE's running-sum completion draws what one full forward per drawn dimension
    (the base class's) draws from the same generator."""
    module = model(binary_info(9), hidden=16, order="random")
    (pos,) = module.positions()
    x = (torch.rand(6, 9, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    order = torch.argsort(pos)
    drawn = order[4:]  # the first four in the order observed
    fast = module.complete_mask(0, x, drawn, 1.0, torch.Generator().manual_seed(2))
    slow = AutoregressiveDensity.complete_mask(
        module, 0, x, drawn, 1.0, torch.Generator().manual_seed(2)
    )
    assert torch.equal(fast, slow) and torch.equal(fast[:, order[:4]], x[:, order[:4]])


def test_completion_in_a_random_order_is_refused_unless_the_observed_come_first() -> None:
    module = model(binary_info(6), hidden=8, order="random")
    fn = FAMILY.capability(Capability.COMPLETE)
    x = torch.ones(4, 6)
    with pytest.raises(Unsupported, match="order natural"):
        fn(module, x, torch.arange(6) < 3, SampleOptions(n=4))
    (pos,) = module.positions()
    first = pos < 3  # the first three of the order: a prefix, so exact
    out = fn(module, x, first, SampleOptions(n=4))
    assert torch.equal(out[:, first], x[:, first])


def test_completion_costs_one_forward_against_the_bound() -> None:
    module = model(binary_info(9), hidden=8)
    fn = FAMILY.capability(Capability.COMPLETE)
    x, top = torch.ones(90, 9), torch.arange(9) < 3
    assert fn(module, x, top, SampleOptions(n=90, max_rows=90)).shape == (90, 9)
    with pytest.raises(OptionError) as refused:
        fn(module, x[:1].expand(91, 9), top, SampleOptions(n=91, max_rows=90))
    assert refused.value.field == "n"


@pytest.mark.slow
def test_a_short_fit_on_digits_bin_beats_independent_pixels_by_far() -> None:
    """60 epochs on digits_bin (about 10 s on one core): the test NLL was 18.7 nats
    (seeds 0 to 2) against 24.4 for independent Bernoulli pixels fitted on the same
    training split; asserted at least 4.5 nats below."""
    data = load("digits_bin")
    baseline = independent_bernoulli_nll(data.x_train, data.x_test)
    params = NADEParams(hidden=100)
    ctx = LocalContext(epochs=60, batch_size=64, seed=0)  # seeds the initial weights too
    module = FAMILY.build(params, data.info)
    FAMILY.fit(module, data, params, ctx)
    ((_, nll),) = ctx.metric("test_nll")
    assert nll < baseline - 4.5, (nll, baseline)
