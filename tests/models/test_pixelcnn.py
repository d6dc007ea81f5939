"""The pixel families, ``pixelcnn``, ``gated_pixelcnn`` (unconditional and conditional) and
``pixelrnn`` (Row LSTM and Diagonal BiLSTM; its own tests in test_pixelrnn.py):
the autoregressive property in raster order (by the Jacobian), the blind spot (the
receptive field of one pixel against hand-drawn masks), exact normalisation (all 2⁹ binary
3×3 images, all 3⁴ 3-level 2×2 ones; per label and marginal), sampling and completion
against the model's own probabilities, the options each capability refuses, and a tiny fit."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch.autograd.functional import jacobian

from models.context import LocalContext
from models.data import DataInfo, load
from models.family import Capability, Family, Unsupported
from models.gated_pixelcnn import FAMILY as GATED
from models.generative import OptionError, SampleOptions
from models.pixel import MaskedConv2d, PixelDensity, causal_mask, evaluate
from models.pixelcnn import FAMILY as PIXELCNN
from models.pixelrnn import FAMILY as PIXELRNN
from tests.support.data import tiny
from tests.support.densities import all_images, image_info

FAMILIES = {"pixelcnn": PIXELCNN, "gated_pixelcnn": GATED, "pixelrnn": PIXELRNN}
CASES = [
    ("pixelcnn", {}),
    ("gated_pixelcnn", {}),
    ("gated_pixelcnn", {"conditional": True}),
    ("pixelrnn", {"layer": "row_lstm"}),
    ("pixelrnn", {"layer": "diagonal_bilstm"}),
]
IDS = ["pixelcnn", "gated", "gated-conditional", "row-lstm", "diagonal-bilstm"]
SMALL = {"pixelrnn": {"hidden": 4, "layers": 2}}  # others: {"channels": 8, "layers": 2}
PI = torch.tensor([0.5, 0.3, 0.2])  # the class frequencies a conditional model is given


def model(name: str, info: DataInfo, sharpen: float = 3.0, **params: Any) -> PixelDensity:
    """A small random model; its last layer scaled by ``sharpen`` so the conditionals are
    far from uniform (what sampling tests can tell apart)."""
    torch.manual_seed(0)
    fam = FAMILIES[name]
    small = SMALL.get(name, {"channels": 8, "layers": 2})
    module = fam.build(fam.params(**{**small, **params}), info)
    assert isinstance(module, PixelDensity)
    with torch.no_grad():
        last = module.head[-1]
        assert isinstance(last, torch.nn.Conv2d)
        last.weight.mul_(sharpen)
        last.bias.normal_()
        if module.n_classes == len(PI):
            module.log_pi.copy_(PI.log())
    return module.eval()


def codes(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Images (N, D) on levels 0..1 -> their index in ``all_images`` (N,)."""
    digits = (x * (levels - 1)).round().long()
    weights = levels ** torch.arange(x.shape[1] - 1, -1, -1)
    return (digits * weights).sum(1)


def test_masks_a_and_b() -> None:
    assert causal_mask(3, 3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert causal_mask(3, 3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    conv = MaskedConv2d(2, 3, 5, "A")
    assert "mask" not in conv.state_dict()  # rebuilt with the module, not stored
    x = torch.randn(1, 2, 6, 6)
    expected = torch.nn.functional.conv2d(x, conv.weight * conv.mask, conv.bias, padding=2)
    torch.testing.assert_close(conv(x), expected)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_logits_are_autoregressive_in_raster_order(name: str, params: dict[str, Any]) -> None:
    """d logits(k) / d input(j) = 0 for every j ≥ k in raster order; ≠ 0 for some j < k."""
    info = image_info(4, 4, levels=3)
    module = model(name, info, **params)
    labels = torch.tensor([1]) if module.conditional else None
    u = torch.rand(16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    jac = jacobian(lambda v: module.net(v.view(1, 1, 4, 4), labels)[0].flatten(1), u)
    assert jac.shape == (3, 16, 16)  # [level, pixel k, input j]
    influence = jac.abs().sum(0)  # (k, j)
    future = torch.ones(16, 16).triu().bool()  # j ≥ k
    assert bool((influence[future] == 0).all())
    assert bool((influence.tril(-1).sum(1)[1:] > 0).all())  # every pixel after the first


# The receptive field of pixel o = (5, 2) of an 8 × 8 image after the 7 × 7 first layer and
# 3 layers of kernel 3: "#" influences it, "." does not.
PIXELCNN_FIELD = """
########
########
########
#######.
######..
##o.....
........
........
"""  # the blind spot: (4, 6), (4, 7), (3, 7), above and to the right, come before o
GATED_FIELD = """
########
########
########
########
########
##o.....
........
........
"""  # every pixel above, and the two to the left


def drawn(grid: str) -> tuple[torch.Tensor, int]:
    rows = grid.strip().splitlines()
    flat = "".join(rows)
    return torch.tensor([ch == "#" for ch in flat]).view(len(rows), -1), flat.index("o")


@pytest.mark.parametrize("conditional", [False, True])
def test_the_blind_spot_is_pixelcnns_alone(conditional: bool) -> None:
    info = image_info(8, 8)
    expect_p, position = drawn(PIXELCNN_FIELD)
    expect_g, _ = drawn(GATED_FIELD)
    pixelcnn = model("pixelcnn", info, layers=3, kernel_size=3)
    gated = model("gated_pixelcnn", info, layers=3, kernel_size=3, conditional=conditional)
    field_p = PIXELCNN.capability(Capability.RECEPTIVE_FIELD)(pixelcnn, position)
    field_g = GATED.capability(Capability.RECEPTIVE_FIELD)(gated, position)
    assert field_p.shape == field_g.shape == (64,)
    seen_p, seen_g = (field_p > 0).view(8, 8), (field_g > 0).view(8, 8)
    assert torch.equal(seen_p, expect_p), seen_p.int()
    assert torch.equal(seen_g, expect_g), seen_g.int()
    missed = seen_g & ~seen_p
    assert missed.nonzero().tolist() == [[3, 7], [4, 6], [4, 7]]
    assert not bool((seen_p & ~seen_g).any())


def _all_log_probs(module: PixelDensity, x: torch.Tensor, labels: int | None) -> torch.Tensor:
    with torch.no_grad():
        y = None if labels is None else torch.full((len(x),), labels)
        return module.log_prob(x, y)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
@pytest.mark.parametrize(("h", "w", "levels"), [(3, 3, 2), (2, 2, 3)])
def test_probabilities_sum_to_one(
    name: str, params: dict[str, Any], h: int, w: int, levels: int
) -> None:
    """Σ over every image (2⁹ binary 3×3, 3⁴ of 3 levels 2×2) of P(x) = 1; for a
    conditional model for each label and for the marginal."""
    module = model(name, image_info(h, w, levels), **params)
    x = all_images(h * w, levels)
    labels: list[int | None] = [None, 0, 1, 2] if module.conditional else [None]
    for y in labels:
        log_p = _all_log_probs(module, x, y)
        assert log_p.shape == (levels ** (h * w),) and bool((log_p < 0).all())
        total = torch.logsumexp(log_p, 0)
        torch.testing.assert_close(total, torch.tensor(0.0), atol=1e-5, rtol=0)
    if module.conditional:  # the marginal is the π-mixture of the per-label ones
        per_label = torch.stack([_all_log_probs(module, x, y) for y in range(3)], 1)
        mixed = torch.logsumexp(PI.log() + per_label, 1)
        torch.testing.assert_close(_all_log_probs(module, x, None), mixed)


def tempered(module: PixelDensity, x: torch.Tensor, temperature: float, label: int | None):
    """log Π_k softmax(logits_k / T)[x_k] of every image x: what sampling at T draws."""
    idx = module.index(x)
    labels = None if label is None else torch.full((len(x),), label)
    with torch.no_grad():
        logits = module.logits(module.net_input(idx), labels) / temperature
    picked = logits.log_softmax(1).gather(1, idx.view(len(x), 1, module.c, module.h, module.w))
    return picked.sum((1, 2, 3, 4))


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_samples_follow_the_model_probabilities(name: str, params: dict[str, Any]) -> None:
    """Raster-order sampling of a 2×2 binary model draws each of the 16 images as often as
    the model says: exp(log_prob) at T = 1 (per label, and the marginal with classes drawn
    from π), the product of softmax(logits / T) at T = 0.5."""
    module = model(name, image_info(2, 2), **params)
    fn = FAMILIES[name].capability(Capability.SAMPLE)
    x = all_images(4, 2)
    n = 20_000
    labels: list[int | None] = [None, 2] if module.conditional else [None]
    for label in labels:
        for t in (1.0, 0.5):
            drawn = fn(module, SampleOptions(n=n, seed=0, label=label, temperature=t))
            freq = torch.bincount(codes(drawn, 2), minlength=16).float() / n
            if label is None and module.conditional:
                per = torch.stack([tempered(module, x, t, y) for y in range(3)], 1)
                p = (PI.log() + per).logsumexp(1).exp()
            else:
                p = tempered(module, x, t, label).exp()
            if t == 1.0:
                torch.testing.assert_close(p, _all_log_probs(module, x, label).exp())
            torch.testing.assert_close(freq, p, atol=0.012, rtol=0)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_sampling_is_seeded_and_temperature_matters(name: str, params: dict[str, Any]) -> None:
    module = model(name, image_info(4, 4, levels=3), **params)
    fn = FAMILIES[name].capability(Capability.SAMPLE)
    a = fn(module, SampleOptions(n=32, seed=3))
    assert a.shape == (32, 16) and set(a.unique().tolist()) <= {0.0, 0.5, 1.0}
    assert torch.equal(a, fn(module, SampleOptions(n=32, seed=3)))
    assert not torch.equal(a, fn(module, SampleOptions(n=32, seed=4)))
    assert not torch.equal(a, fn(module, SampleOptions(n=32, seed=3, temperature=0.3)))


def trained_on_patterns() -> PixelDensity:
    """A conditional 2×2 binary model fitted to one image per class (all 0, all 1, a
    diagonal), so the top row tells the class and the class the bottom row."""
    module = model("gated_pixelcnn", image_info(2, 2), sharpen=1.0, conditional=True).train()
    patterns = torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 1]])
    y = torch.arange(3).repeat(16)
    opt = torch.optim.Adam(module.parameters(), lr=3e-2)
    for _ in range(30):
        loss = module.training_loss(patterns[y], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return module.eval()


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_completions_are_exact_conditional_draws(name: str, params: dict[str, Any]) -> None:
    """The top row of a 2×2 binary image observed (a raster prefix): the bottom row is drawn
    as often as P(bottom | top) = P(x) / Σ_bottom P(x) says; for a conditional model without
    a label, the marginal's conditional (each row's class drawn from its posterior given the
    top row: on images that tell their class, drawing it from π instead would put half the
    completions of a top row (1, 1) at (0, 0))."""
    if params.get("conditional"):
        module, top_code = trained_on_patterns(), 3
    else:
        module, top_code = model(name, image_info(2, 2), **params), 2
    fn = FAMILIES[name].capability(Capability.COMPLETE)
    n = 20_000
    x = all_images(4, 2)[top_code * 4].expand(n, 4)  # the top row given, the bottom (0, 0)
    observed = torch.tensor([True, True, False, False])
    out = fn(module, x, observed, SampleOptions(n=n, seed=0))
    assert torch.equal(out[:, :2], x[:, :2])
    freq = torch.bincount(codes(out[:, 2:], 2), minlength=4).float() / n
    joint = _all_log_probs(module, all_images(4, 2), None).exp().view(4, 4)  # [top, bottom]
    expected = joint[top_code] / joint[top_code].sum()
    torch.testing.assert_close(freq, expected, atol=0.012, rtol=0)
    assert torch.equal(out, fn(module, x, observed, SampleOptions(n=n, seed=0)))


def _field_of(err: pytest.ExceptionInfo[OptionError]) -> str:
    return err.value.field


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_bad_options_name_their_field(name: str, params: dict[str, Any]) -> None:
    fam: Family = FAMILIES[name]
    module = model(name, image_info(3, 3, levels=3), **params)
    log_prob = fam.capability(Capability.LOG_PROB)
    sample = fam.capability(Capability.SAMPLE)
    complete = fam.capability(Capability.COMPLETE)
    field = fam.capability(Capability.RECEPTIVE_FIELD)
    x = all_images(9, 3)[::700]  # 29 images on the levels 0, 0.5, 1
    out = log_prob(module, x, None, 1)
    assert out.exact and out.k is None and out.log_prob.shape == (len(x),)
    observed = torch.arange(9) < 4
    bad: list[tuple[str, Any]] = [
        ("inputs", lambda: log_prob(module, x * 0.3, None, 1)),  # off the levels
        ("inputs", lambda: log_prob(module, x + 1.0, None, 1)),  # above the top level
        ("inputs", lambda: log_prob(module, x[:, :8], None, 1)),  # 8 pixels, not 9
        ("inputs", lambda: complete(module, x * 0.3, observed, SampleOptions(n=len(x)))),
        ("inputs", lambda: complete(module, x, observed[:8], SampleOptions(n=len(x)))),
        ("temperature", lambda: sample(module, SampleOptions(n=2, temperature=0.0))),
        ("temperature", lambda: sample(module, SampleOptions(n=2, temperature=-1.0))),
        ("n", lambda: sample(module, SampleOptions(n=11, max_rows=module.sample_rows(10)))),
        ("position", lambda: field(module, 9)),
    ]
    if module.conditional:
        y_bad = torch.full((len(x),), 3)
        bad += [
            ("label", lambda: sample(module, SampleOptions(n=2, label=3))),
            ("label", lambda: complete(module, x, observed, SampleOptions(n=len(x), label=3))),
            ("labels", lambda: log_prob(module, x, y_bad, 1)),
            ("labels", lambda: log_prob(module, x, torch.zeros(2, dtype=torch.long), 1)),
        ]
        with_labels = log_prob(module, x, torch.ones(len(x), dtype=torch.long), 1)
        assert with_labels.exact and not torch.equal(with_labels.log_prob, out.log_prob)
    else:
        bad += [
            ("label", lambda: sample(module, SampleOptions(n=2, label=1))),
            ("labels", lambda: log_prob(module, x, torch.zeros(len(x), dtype=torch.long), 1)),
        ]
    for expected, call in bad:
        with pytest.raises(OptionError) as err:
            call()
        assert _field_of(err) == expected, (expected, str(err.value))
    assert sample(module, SampleOptions(n=10, max_rows=module.sample_rows(10))).shape == (10, 9)
    # the unobserved pixels' values are not read; observed ones after an unobserved one
    # (not a raster prefix) would need summing out: Unsupported, the API's 409
    holes = x.clone()
    holes[:, ~observed] = float("nan")
    assert torch.equal(complete(module, holes, observed, SampleOptions(n=len(x)))[:, :4], x[:, :4])
    with pytest.raises(Unsupported, match="raster order"):
        complete(module, x, ~observed, SampleOptions(n=len(x)))


def test_data_the_pixel_families_refuse() -> None:
    colour = DataInfo(
        name="rgb",
        task="classification",
        input_shape=(12,),
        target_dim=1,
        n_classes=2,
        n_train=0,
        image_shape=(3, 2, 2),
        levels=2,
        value_max=1.0,
    )
    for fam in (PIXELCNN, GATED):
        with pytest.raises(ValueError, match="grey levels"):
            fam.build(fam.params(), load("moons").info)
        with pytest.raises(ValueError, match="one-channel"):
            fam.build(fam.params(), colour)
        with pytest.raises(ValidationError, match="odd"):
            fam.params(kernel_size=4)
    with pytest.raises(ValueError, match="grey levels"):
        PIXELRNN.build(PIXELRNN.params(), load("moons").info)
    assert PIXELRNN.build(PIXELRNN.params(hidden=3, layers=1), colour).c == 3  # R, G, B
    unlabelled = image_info(2, 2, n_classes=0)
    with pytest.raises(ValueError, match="class labels"):
        GATED.build(GATED.params(conditional=True), unlabelled)


def test_a_tiny_fit_lowers_the_test_nll_and_logs_its_metrics_and_sampling_time() -> None:
    data = tiny("digits_bin", n_train=128, n_eval=32)
    for name, params in CASES:
        module = model(name, data.info, sharpen=1.0, **params)
        before = evaluate(module, data, "test")["test_nll"]
        ctx = LocalContext(epochs=4, batch_size=32)
        small = SMALL.get(name, {"channels": 8, "layers": 2})
        FAMILIES[name].fit(module, data, FAMILIES[name].params(**small, **params), ctx)
        ((_, after),) = ctx.metric("test_nll")
        assert after < before - 1.0, name
        ((_, bits),) = ctx.metric("test_bits_per_dim")
        assert bits == pytest.approx(after / (64 * 0.6931471805599453))
        assert len(ctx.metric("val_nll")) == len(ctx.metric("val_loss")) == 4
        ((_, seconds),) = ctx.metric("sample_seconds_per_image")  # the notes' "slow gen"
        assert 0 < seconds < 60
        if module.conditional:
            counts = torch.bincount(data.y_train, minlength=10).float()
            torch.testing.assert_close(module.log_pi.exp(), counts / counts.sum())
            assert ctx.metric("test_nll_given_label")


@pytest.mark.parametrize("name", ["pixelcnn", "gated_pixelcnn"])
def test_work_counts_every_pixel_each_pass_runs_over(name: str) -> None:
    """The API's bound on work: a pass for pixel k runs the net over the rows down to k's,
    each pixel 1 / CONV_SPEEDUP of a dense row; sampling is one pass per pixel; a
    completion passes for the drawn pixels only; a log-likelihood is one full pass."""
    from models.pixel import CONV_SPEEDUP

    fam: Family = FAMILIES[name]
    module = model(name, image_info(4, 3, levels=2), channels=4, layers=1)
    assert isinstance(module, PixelDensity)
    h, w = 4, 3
    per_image = w * w * h * (h + 1) // 2  # Σ_k (row(k) + 1) · W
    assert module.sample_rows(7) == -(-7 * per_image // CONV_SPEEDUP)
    bottom = torch.arange(h * w) >= 2 * w  # the bottom two rows drawn
    assert module.fill_rows(7, bottom) == -(-7 * (w * 3 * w + w * 4 * w) // CONV_SPEEDUP)
    assert fam.log_prob_passes is not None
    assert fam.log_prob_passes(module) == -(-h * w // CONV_SPEEDUP)
