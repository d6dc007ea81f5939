"""``pixelcnn_pp`` and its discretised logistic mixture (``models.logistic_mixture``).

The mixture as maths: log-probabilities against hand values (K = 1 and K = 2, at level 0,
at level L − 1 and in the middle; a tiny bin taking the 1e-5 fallback; the −7 clamp),
probabilities summing to 1 over all 256 (and 17, 3) levels, finite gradients at the edges,
sampling against the (tempered) probabilities. The network: the autoregressive property by
the Jacobian in double precision through the down- and upsampling, no blind spot, exact
normalisation over all images of tiny sets, samples and completions against the model's
own probabilities, the options refused with their field, and a tiny fit."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch.autograd.functional import jacobian

from models.context import LocalContext
from models.family import Capability, Unsupported
from models.generative import OptionError, SampleOptions
from models.logistic_mixture import (
    LOG_SCALE_MIN,
    bin_log_probs,
    mixture_log_prob,
    sample_levels,
    split,
)
from models.optim import OptimizerSpec
from models.pixel import CONV_SPEEDUP, PixelDensity, evaluate
from models.pixelcnn_pp import FAMILY, PixelCNNpp, stage_count
from tests.support.data import tiny
from tests.support.densities import all_images, image_info


def sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def mix(
    idx: list[int], logits: list[float], means: list[float], log_scales: list[float], levels: int
) -> torch.Tensor:
    """log P of each level in ``idx`` under one mixture (float64), via ``mixture_log_prob``."""
    n = len(idx)
    par = [torch.tensor(v, dtype=torch.float64).expand(n, -1) for v in (logits, means, log_scales)]
    return mixture_log_prob(torch.tensor(idx), *par, levels)


# --- the mixture --------------------------------------------------------------------------


def test_one_logistic_at_the_edges_and_the_middle_against_hand_values() -> None:
    # L = 3, μ = 0, s = 1: the bins are (−∞, −0.5], [−0.5, 0.5], [0.5, ∞)
    got = mix([0, 1, 2], [0.0], [0.0], [0.0], 3).exp()
    hand = [0.3775406687981454, 0.24491866240370913, 0.3775406687981454]  # σ(−½), σ(½) − σ(−½)
    torch.testing.assert_close(got, torch.tensor(hand, dtype=torch.float64))
    # L = 17 (digits), μ = 0.1, log s = −1.5: x_l = l / 8 − 1, δ = 1 / 16
    mu, s = 0.1, math.exp(-1.5)
    got = mix([0, 8, 11, 16], [0.3], [mu], [-1.5], 17)
    hand = [
        math.log(sig((-1 + 1 / 16 - mu) / s)),  # from −∞
        math.log(sig((0 + 1 / 16 - mu) / s) - sig((0 - 1 / 16 - mu) / s)),
        math.log(sig((3 / 8 + 1 / 16 - mu) / s) - sig((3 / 8 - 1 / 16 - mu) / s)),
        math.log(1 - sig((1 - 1 / 16 - mu) / s)),  # to +∞
    ]
    torch.testing.assert_close(got, torch.tensor(hand, dtype=torch.float64))


def test_two_components_weigh_their_bins_by_the_softmax_of_the_logits() -> None:
    # weights softmax(0, log 3) = (1/4, 3/4); components (μ 0, s 1) and (μ 0.5, s e^−1)
    s2 = math.exp(-1.0)

    def bins(x: float, half: float, first: bool, last: bool, mu: float, s: float) -> float:
        hi = 1.0 if last else sig((x + half - mu) / s)
        lo = 0.0 if first else sig((x - half - mu) / s)
        return hi - lo

    for levels in (17, 256):
        half = 1 / (levels - 1)
        idx = [0, levels // 2, 3 * levels // 4, levels - 1]
        got = mix(idx, [0.0, math.log(3)], [0.0, 0.5], [0.0, -1.0], levels)
        hand = []
        for i in idx:
            x, first, last = 2 * i / (levels - 1) - 1, i == 0, i == levels - 1
            p = 0.25 * bins(x, half, first, last, 0.0, 1.0)
            hand.append(math.log(p + 0.75 * bins(x, half, first, last, 0.5, s2)))
        torch.testing.assert_close(got, torch.tensor(hand, dtype=torch.float64))


def test_a_tiny_bin_takes_the_midpoint_density() -> None:
    """A middle bin far in the tail (μ = −1, s = e^−5, level 200 of 256: z = 233): both
    sigmoids round to 1 in float32, so the bin is log pdf(x) − log(127.5), the logistic
    density at its centre times its width; in float64 the exact bin agrees to a relative
    sinh(δ/s)/(δ/s) − 1 (δ/s = 0.58 here: 5.8%, on a probability of e^−230)."""
    mu, log_s, level = -1.0, -5.0, 200
    x = 2 * level / 255 - 1
    z = (x - mu) / math.exp(log_s)
    hand = z - log_s - 2 * (z + math.log1p(math.exp(-z))) - math.log(127.5)
    par = [torch.tensor([[v]]) for v in (mu, log_s)]
    got = bin_log_probs(torch.tensor([level]), *par, 256)  # float32
    assert got.dtype == torch.float32 and math.isfinite(float(got))
    assert float(got) == pytest.approx(hand, rel=1e-6)
    ratio = math.sinh(1 / 255 / math.exp(log_s)) / (1 / 255 / math.exp(log_s))
    exact = hand + math.log(ratio)  # the bin's mass: pdf(x) · 2δ · sinh(δ/s)/(δ/s) (z ≫ 1)
    assert abs(float(got) - exact) < 0.06
    # just under 1e-5 (float64, no rounding): the fallback; just over: the exact difference
    for mu, fallback in ((0.5, True), (0.45, False)):
        idx, s = torch.tensor([128]), -3.0
        got = float(bin_log_probs(idx, torch.tensor([[mu]], dtype=torch.float64),
                                  torch.tensor([[s]], dtype=torch.float64), 256))  # fmt: skip
        x, half = 2 * 128 / 255 - 1, 1 / 255
        delta = sig((x + half - mu) / math.exp(s)) - sig((x - half - mu) / math.exp(s))
        zm = (x - mu) / math.exp(s)
        mid = zm - s - 2 * math.log1p(math.exp(zm)) - math.log(127.5)
        assert (delta < 1e-5) == fallback
        assert got == pytest.approx(mid if fallback else math.log(delta), rel=1e-9)


def test_log_scales_are_clamped_at_minus_seven() -> None:
    idx = torch.tensor([0, 100, 127, 128, 255])
    means = torch.full((5, 1), 0.002, requires_grad=True)
    low = torch.full((5, 1), -10.0, requires_grad=True)
    at = torch.full((5, 1), LOG_SCALE_MIN)
    torch.testing.assert_close(
        bin_log_probs(idx, means, low, 256), bin_log_probs(idx, means, at, 256)
    )
    bin_log_probs(idx, means, low, 256).sum().backward()
    assert low.grad is not None and bool((low.grad == 0).all())  # no gradient below the clamp


@pytest.mark.parametrize("levels", [3, 17, 256])
def test_probabilities_sum_to_one_over_all_levels(levels: int) -> None:
    """Σ_l P(l) = 1 for random mixtures, from sharp (s = e^−7, the clamp) to wide (s = e³),
    means beyond the edges included; within 1e-4 where tiny bins take the midpoint."""
    gen = torch.Generator().manual_seed(0)
    n, k = 400, 3
    logits = torch.randn(n, k, generator=gen) * 2
    means = torch.rand(n, k, generator=gen) * 3 - 1.5
    log_scales = torch.rand(n, k, generator=gen) * 10 - 7
    idx = torch.arange(levels).repeat_interleave(n)  # every level of every mixture
    rep = [t.repeat(levels, 1) for t in (logits, means, log_scales)]
    log_p = mixture_log_prob(idx, *rep, levels).view(levels, n)
    assert bool((log_p <= 1e-6).all()) and bool(torch.isfinite(log_p).all())
    total = log_p.logsumexp(0).exp()
    torch.testing.assert_close(total, torch.ones(n), atol=1e-4, rtol=0)
    if levels == 256:  # in double the bins telescope: 1 but for the fallback's bins
        rep64 = [t.double() for t in rep]
        total64 = mixture_log_prob(idx, *rep64, levels).view(levels, n).logsumexp(0).exp()
        torch.testing.assert_close(total64, torch.ones(n, dtype=torch.float64), atol=2e-5, rtol=0)


def test_gradients_are_finite_at_the_edges_and_in_the_tails() -> None:
    levels = 256
    idx = torch.tensor([0, 0, 255, 255, 1, 254, 128, 128, 0, 255])
    means = torch.tensor([5.0, -5.0, 5.0, -5.0, 1.0, -1.0, 0.9, -3.0, 0.0, 0.0])[:, None]
    log_scales = torch.tensor([-7.0, -7.0, -7.0, -7.0, -9.0, -6.0, -7.0, -5.0, 3.0, 3.0])[:, None]
    means.requires_grad_()
    log_scales.requires_grad_()
    logits = torch.zeros(10, 1, requires_grad=True)
    log_p = mixture_log_prob(idx, logits, means, log_scales, levels)
    assert bool(torch.isfinite(log_p).all()), log_p
    log_p.sum().backward()
    for t in (means, log_scales, logits):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all()), t.grad


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_samples_follow_the_mixture_at_each_temperature(temperature: float) -> None:
    """A component by its weight, then a logistic value by the inverse CDF, rounded to its
    bin: the levels come out as often as ``mixture_log_prob`` at T says."""
    levels, n = 17, 200_000
    par = [torch.tensor([v]).expand(n, -1) for v in ([0.0, 1.0], [-0.7, 0.3], [-2.0, -1.5])]
    drawn = sample_levels(*par, levels, temperature, torch.Generator().manual_seed(0))
    freq = torch.bincount(drawn, minlength=levels).double() / n
    p = mix(list(range(levels)), [0.0, 1.0], [-0.7, 0.3], [-2.0, -1.5], levels)
    if temperature != 1.0:
        p = mixture_log_prob(
            torch.arange(levels), *[t[:levels].double() for t in par], levels, temperature
        )
    torch.testing.assert_close(freq, p.exp(), atol=3e-3, rtol=0)


# --- the network ----------------------------------------------------------------------------


def model(h: int, w: int, levels: int, sharpen: float = 3.0, **params: Any) -> PixelCNNpp:
    """A small random model, its head scaled by ``sharpen`` (conditionals far from uniform)."""
    torch.manual_seed(0)
    module = FAMILY.build(
        FAMILY.params(**{"filters": 8, "components": 2, **params}), image_info(h, w, levels)
    )
    assert isinstance(module, PixelCNNpp)
    with torch.no_grad():
        module.head.weight.mul_(sharpen)
        module.head.bias.normal_()
    return module.eval()


def test_stages_follow_the_image_size() -> None:
    assert [stage_count(h, w) for h, w in [(8, 8), (28, 28), (4, 4), (2, 2), (3, 3), (6, 4)]] == [
        3, 3, 3, 2, 1, 2,
    ]  # fmt: skip


@pytest.mark.parametrize(("h", "w"), [(4, 4), (8, 8), (6, 4), (3, 3)])
def test_outputs_are_autoregressive_through_the_down_and_upsampling(h: int, w: int) -> None:
    """d out(k) / d input(j) = 0 for every j ≥ k in raster order (float64: an exact 0, not
    rounding), through 1-3 stages of stride-2 convolutions and transposed convolutions; on
    4 × 4 (3 stages) every earlier pixel influences every pixel: no blind spot."""
    module = model(h, w, 3).double()
    d = h * w
    u = torch.rand(d, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    jac = jacobian(lambda v: module.net(v.view(1, 1, h, w), None)[0].flatten(1), u)
    assert jac.shape == (6, d, d)  # [3 K outputs, pixel k, input j]
    influence = jac.abs().sum(0)
    assert bool((influence[torch.ones(d, d).triu().bool()] == 0).all())
    assert bool((influence.tril(-1).sum(1)[1:] > 0).all())
    if (h, w) in ((4, 4), (3, 3)):
        assert bool((influence.tril(-1) > 0).sum() == d * (d - 1) // 2)
    # fewer rows (raster sampling's crop) give the same outputs for the rows they have
    rows = h - 1
    full = module.net(u.view(1, 1, h, w), None)[:, :, :rows]
    torch.testing.assert_close(module.net(u.view(1, 1, h, w)[:, :, :rows], None), full)


def test_the_receptive_field_has_no_blind_spot() -> None:
    fn = FAMILY.capability(Capability.RECEPTIVE_FIELD)
    module = model(8, 8, 17, nr_resnet=2)
    field = fn(module, 5 * 8 + 2).view(8, 8) > 0
    before = (torch.arange(64) < 5 * 8 + 2).view(8, 8)
    assert torch.equal(field, before), field.int()  # the pixelcnn blind spot (4, 6) is seen


@pytest.mark.parametrize(("h", "w", "levels"), [(2, 2, 3), (3, 3, 2)])
def test_the_model_sums_to_one_over_all_images(h: int, w: int, levels: int) -> None:
    module = model(h, w, levels)
    with torch.no_grad():
        log_p = module.log_prob(all_images(h * w, levels))
    assert bool((log_p < 0).all())
    torch.testing.assert_close(log_p.logsumexp(0), torch.tensor(0.0), atol=1e-5, rtol=0)


def codes(x: torch.Tensor, levels: int) -> torch.Tensor:
    digits = (x * (levels - 1)).round().long()
    return (digits * levels ** torch.arange(x.shape[1] - 1, -1, -1)).sum(1)


def tempered(module: PixelDensity, x: torch.Tensor, temperature: float) -> torch.Tensor:
    """log Π_k P_T(x_k | x_<k): each pixel's mixture at T, what sampling at T draws."""
    assert isinstance(module, PixelCNNpp)
    idx = module.index(x)
    with torch.no_grad():
        out = module.net(module.net_input(idx), None)
    logits, means, log_scales = split(out, module.components)
    target = idx.view(len(x), module.h, module.w)
    per = mixture_log_prob(target, logits, means, log_scales, module.levels, temperature)
    return per.sum((1, 2))


def test_samples_follow_the_model_probabilities() -> None:
    """Raster-order sampling of a 2 × 2 model of 3 levels draws each of the 81 images as
    often as exp(log_prob) at T = 1, and as the product of the tempered mixtures at 0.5."""
    module = model(2, 2, 3, filters=4)
    fn = FAMILY.capability(Capability.SAMPLE)
    x, n = all_images(4, 3), 20_000
    with torch.no_grad():
        exact = module.log_prob(x).exp()
    for t in (1.0, 0.5):
        drawn = fn(module, SampleOptions(n=n, seed=0, temperature=t))
        freq = torch.bincount(codes(drawn, 3), minlength=81).float() / n
        p = tempered(module, x, t).exp()
        if t == 1.0:
            torch.testing.assert_close(p, exact)
        torch.testing.assert_close(freq, p, atol=0.008, rtol=0)
    assert exact.max() > 0.04  # far from uniform (1/81): the test tells distributions apart


def test_sampling_is_seeded_and_temperature_matters() -> None:
    module = model(4, 4, 17)
    fn = FAMILY.capability(Capability.SAMPLE)
    a = fn(module, SampleOptions(n=16, seed=3))
    assert a.shape == (16, 16) and bool(((a * 16).round() == a * 16).all())
    assert torch.equal(a, fn(module, SampleOptions(n=16, seed=3)))
    assert not torch.equal(a, fn(module, SampleOptions(n=16, seed=4)))
    assert not torch.equal(a, fn(module, SampleOptions(n=16, seed=3, temperature=0.3)))


def test_completions_are_exact_conditional_draws() -> None:
    module = model(2, 2, 2)
    fn = FAMILY.capability(Capability.COMPLETE)
    n, top = 20_000, 2  # top row (1, 0)
    x = all_images(4, 2)[top * 4].expand(n, 4)
    observed = torch.tensor([True, True, False, False])
    out = fn(module, x, observed, SampleOptions(n=n, seed=0))
    assert torch.equal(out[:, :2], x[:, :2])
    freq = torch.bincount(codes(out[:, 2:], 2), minlength=4).float() / n
    with torch.no_grad():
        joint = module.log_prob(all_images(4, 2)).exp().view(4, 4)
    torch.testing.assert_close(freq, joint[top] / joint[top].sum(), atol=0.012, rtol=0)
    with pytest.raises(Unsupported, match="raster order"):
        fn(module, x, ~observed, SampleOptions(n=n))


def test_bad_options_name_their_field() -> None:
    module = model(3, 3, 3)
    log_prob = FAMILY.capability(Capability.LOG_PROB)
    sample = FAMILY.capability(Capability.SAMPLE)
    complete = FAMILY.capability(Capability.COMPLETE)
    field = FAMILY.capability(Capability.RECEPTIVE_FIELD)
    x = all_images(9, 3)[::700]
    out = log_prob(module, x, None, 1)
    assert out.exact and out.log_prob.shape == (len(x),)
    observed = torch.arange(9) < 4
    bad: list[tuple[str, Any]] = [
        ("inputs", lambda: log_prob(module, x * 0.3, None, 1)),
        ("inputs", lambda: log_prob(module, x[:, :8], None, 1)),
        ("inputs", lambda: complete(module, x * 0.3, observed, SampleOptions(n=len(x)))),
        ("temperature", lambda: sample(module, SampleOptions(n=2, temperature=0.0))),
        ("n", lambda: sample(module, SampleOptions(n=11, max_rows=module.sample_rows(10)))),
        ("position", lambda: field(module, 9)),
        ("label", lambda: sample(module, SampleOptions(n=2, label=1))),
        ("labels", lambda: log_prob(module, x, torch.zeros(len(x), dtype=torch.long), 1)),
    ]
    for expected, call in bad:
        with pytest.raises(OptionError) as err:
            call()
        assert err.value.field == expected, (expected, str(err.value))
    for name, value in [("filters", 1), ("components", 0), ("nr_resnet", 0), ("dropout", 1.0)]:
        with pytest.raises(ValidationError) as verr:
            FAMILY.params(**{name: value})
        assert verr.value.errors()[0]["loc"] == (name,)
    with pytest.raises(ValueError, match="grey levels"):
        FAMILY.build(FAMILY.params(), dataclasses.replace(image_info(2, 2), levels=None))


def test_work_counts_the_padded_rows() -> None:
    """A pass for pixel k runs over the rows down to k's, padded to a multiple of
    2^(stages − 1) (4 on 8 × 8), each pixel 1 / CONV_SPEEDUP of a dense row."""
    module = model(8, 8, 17)
    assert module.stages == 3
    assert [module.seen_pixels(k) for k in (0, 8 * 3 + 7, 8 * 4, 63)] == [32, 32, 64, 64]
    assert module.sample_rows(2) == -(-2 * (32 * 32 + 64 * 32) // CONV_SPEEDUP)


def test_a_tiny_fit_lowers_the_test_nll_and_logs_sampling_time() -> None:
    data = tiny("digits", n_train=128, n_eval=32)  # 17 levels
    params = FAMILY.params(filters=8, components=3, dropout=0.0)
    torch.manual_seed(0)
    module = FAMILY.build(params, data.info)
    assert isinstance(module, PixelCNNpp)
    before = evaluate(module, data, "test")["test_nll"]
    ctx = LocalContext(epochs=4, batch_size=32, optimizer=OptimizerSpec(name="adam", lr=3e-3))
    FAMILY.fit(module, data, params, ctx)
    ((_, after),) = ctx.metric("test_nll")
    assert after < before - 10.0, (before, after)
    ((_, bits),) = ctx.metric("test_bits_per_dim")
    assert bits == pytest.approx(after / (64 * math.log(2)))
    ((_, seconds),) = ctx.metric("sample_seconds_per_image")
    assert 0 < seconds < 60
