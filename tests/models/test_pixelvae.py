"""``pixelvae``: on 2×2 binary images with a 1-D latent, where log p(x) = log ∫ p(x|z) N(z)
dz is computed by quadrature on a fine grid, ELBO ≤ the importance-weighted bound ≤ log p
for every image, the bound rising to log p with k, Σ_x p(x) = 1 and samples drawn as often
as p(x) says; the decoder autoregressive given z (its Jacobian); the KL against its closed
form and a Monte-Carlo estimate; completions against the exact conditional; encode/decode
shapes and the options each capability refuses; active units on a hand case; a tiny fit."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.autograd.functional import jacobian

from models import likelihoods as lik
from models import pixelvae
from models.context import LocalContext
from models.family import Capability, Unsupported
from models.generative import OptionError, SampleOptions
from models.pixelvae import FAMILY, PixelVAE, PixelVAEParams, active_units
from tests.support.data import tiny
from tests.support.densities import all_images, image_info

GRID = torch.linspace(-10.0, 10.0, 4001)  # quadrature over z (1-D latent)


def model(h: int = 2, w: int = 2, levels: int = 2, sharpen: float = 3.0, **params: Any):
    """A small random model; its last layer and z's maps scaled so that p(x|z) varies with
    z and is far from uniform."""
    torch.manual_seed(0)
    base = {"latent_dim": 1, "hidden": 8, "channels": 4, "decoder_layers": 1, **params}
    module = FAMILY.build(FAMILY.params(**base), image_info(h, w, levels))
    assert isinstance(module, PixelVAE)
    with torch.no_grad():
        for last in (module.head[-1], module.z_net[-1]):
            assert isinstance(last, torch.nn.Conv2d | torch.nn.Linear)
            last.weight.mul_(sharpen)
    return module.eval()


def log_px_given_grid(module: PixelVAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) of every image (N, D) at every grid point (N, G)."""
    idx = module.index(x)
    n, g = len(idx), len(GRID)
    z = GRID.repeat_interleave(n)[:, None]  # row j·n + b: grid point j, image b
    with torch.no_grad():
        return module.log_prob_index(idx.repeat(g, 1), z).view(g, n).T


def exact_log_p(module: PixelVAE, x: torch.Tensor) -> torch.Tensor:
    """log ∫ p(x|z) N(z; 0, 1) dz by the trapezoid rule on GRID (N,)."""
    dz = float(GRID[1] - GRID[0])
    f = log_px_given_grid(module, x) + lik.standard_normal_log_prob(GRID[:, None])
    ends = torch.full_like(GRID, math.log(dz))
    ends[[0, -1]] = math.log(dz / 2)
    return torch.logsumexp(f + ends, 1)


def exact_elbo(module: PixelVAE, x: torch.Tensor) -> torch.Tensor:
    """E_q[log p(x|z)] − KL by quadrature over q(z|x) (no sampling) (N,)."""
    with torch.no_grad():
        mean, log_var = module.encode_index(module.index(x))
    dz = float(GRID[1] - GRID[0])
    q = (lik.gaussian_log_prob(GRID[None, :, None], mean[:, None], log_var[:, None])).exp()
    recon = (q * log_px_given_grid(module, x)).sum(1) * dz
    return recon - lik.gaussian_kl(mean, log_var)


def test_elbo_below_the_bound_below_exact_log_p_on_an_enumerable_case() -> None:
    """q(z|x) = N(0.8, 0.3²) for every x, away from the posteriors: a gap of ~0.7 nats
    that the importance-weighted bound closes as k grows (its mean over many draws)."""
    module = model()
    with torch.no_grad():
        module.encoder_head.weight.zero_()
        module.encoder_head.bias.copy_(torch.tensor([0.8, math.log(0.3)]))
    x = all_images(4, 2)
    log_p = exact_log_p(module, x)
    torch.testing.assert_close(torch.logsumexp(log_p, 0), torch.tensor(0.0), atol=1e-4, rtol=0)
    elbo = exact_elbo(module, x)
    gaps = []
    for k in (1, 10, 100, 1000):
        reps = max(10, 2000 // k)  # independent draws of the bound per image
        gen = torch.Generator().manual_seed(k)
        runs = module.iwae(module.index(x).repeat(reps, 1), k, gen).view(reps, len(x))
        iw, se = runs.mean(0), runs.std(0) / math.sqrt(len(runs))
        assert bool((iw <= log_p + 3 * se + 1e-5).all()), (k, iw - log_p)
        assert bool((elbo <= iw + 3 * se + 1e-5).all()), (k, elbo - iw)
        if k == 1:  # one sample: the ELBO itself, in expectation
            assert bool(((iw - elbo).abs() <= 4 * se + 1e-4).all())
        gaps.append(float((log_p - iw).mean()))
    assert bool((elbo < log_p - 1e-3).any())  # q is not the posterior: a real gap
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] and gaps[3] < 0.15 * gaps[0], gaps


def test_samples_follow_the_marginal() -> None:
    """z from the prior, then the pixels: each 2×2 image as often as p(x) (quadrature)."""
    module = model()
    x = all_images(4, 2)
    p = exact_log_p(module, x).exp()
    n = 20_000
    drawn = FAMILY.capability(Capability.SAMPLE)(module, SampleOptions(n=n, seed=0))
    codes = (drawn * torch.tensor([8.0, 4, 2, 1])).sum(1).long()
    freq = torch.bincount(codes, minlength=16).float() / n
    torch.testing.assert_close(freq, p, atol=0.012, rtol=0)


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_decoder_is_autoregressive_given_z(layers: int) -> None:
    """d logits(k) / d input(j) = 0 for every j ≥ k in raster order, whatever z; a
    factorised decoder (0 layers) reads no pixel, a gated one some before each."""
    module = model(4, 4, levels=3, decoder_layers=layers, latent_dim=3)
    z = torch.randn(1, 3, generator=torch.Generator().manual_seed(2))
    u = torch.rand(16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    jac = jacobian(lambda v: module.net(v.view(1, 1, 4, 4), z)[0].flatten(1), u)
    influence = jac.abs().sum(0)  # (k, j)
    assert bool((influence[torch.ones(16, 16).triu().bool()] == 0).all())
    if layers == 0:
        assert not bool(influence.any())
    else:
        assert bool((influence.tril(-1).sum(1)[1:] > 0).all())
    # and z reaches every pixel's logits
    dz = jacobian(lambda zz: module.net(u.view(1, 1, 4, 4), zz.view(1, 3))[0], z[0])
    assert bool((dz.abs().sum((0, 3)) > 0).all())


def test_decoder_is_normalised_for_every_z() -> None:
    module = model(2, 2, levels=3, decoder_layers=2)
    x = all_images(4, 3)
    for z in (-2.0, 0.3, 4.0):
        with torch.no_grad():
            lp = module.log_prob_index(module.index(x), torch.full((len(x), 1), z))
        torch.testing.assert_close(torch.logsumexp(lp, 0), torch.tensor(0.0), atol=1e-5, rtol=0)


def test_kl_is_the_closed_form() -> None:
    module = model(3, 3, latent_dim=4)
    x = all_images(9, 2)[::37]
    idx = module.index(x)
    with torch.no_grad():
        mean, log_var = module.encode_index(idx)
        _, kl = module.elbo_terms(idx, torch.Generator().manual_seed(0))
    hand = 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(1)
    torch.testing.assert_close(kl, hand)
    z = mean + (0.5 * log_var).exp() * torch.randn(200_000, *mean.shape)
    mc = (lik.gaussian_log_prob(z, mean, log_var) - lik.standard_normal_log_prob(z)).mean(0)
    torch.testing.assert_close(mc, kl, atol=0.01, rtol=0)


def test_active_units_on_a_hand_case() -> None:
    """Variances over the rows 0.25, 0.005, 0 and 4 (unbiased): two units above 0.01."""
    n = 1000
    half = torch.arange(n) % 2 * 2 - 1.0  # ±1: variance 1 · n / (n − 1)
    means = torch.stack([0.5 * half, 0.0707 * half, torch.full((n,), 3.0), 2 * half], 1)
    assert active_units(means) == 2
    assert active_units(torch.zeros(5, 3)) == 0


def test_completions_draw_from_the_marginals_conditional() -> None:
    """The top row observed: the bottom row as often as p(x) / Σ_bottom p(x) says (p by
    quadrature; z resampled from prior draws by p(top | z), approximately exact)."""
    module = model()
    fn = FAMILY.capability(Capability.COMPLETE)
    joint = exact_log_p(module, all_images(4, 2)).exp().view(4, 4)  # [top, bottom]
    n = 10_000
    observed = torch.tensor([True, True, False, False])
    for top in (1, 2):
        x = all_images(4, 2)[top * 4].expand(n, 4)
        out = fn(module, x, observed, SampleOptions(n=n, seed=0))
        assert torch.equal(out[:, :2], x[:, :2])
        freq = torch.bincount((out[:, 2] * 2 + out[:, 3]).long(), minlength=4).float() / n
        torch.testing.assert_close(freq, joint[top] / joint[top].sum(), atol=0.025, rtol=0)
    assert torch.equal(out, fn(module, x, observed, SampleOptions(n=n, seed=0)))
    with pytest.raises(Unsupported, match="raster order"):
        fn(module, x[:2], ~observed, SampleOptions(n=2))


def test_encode_decode_and_bad_options_name_their_field() -> None:
    module = model(3, 3, levels=3, latent_dim=2)
    x = all_images(9, 3)[::700]  # 29 images on the levels 0, 0.5, 1
    enc = FAMILY.capability(Capability.ENCODE)(module, x, None)
    assert enc["mean"].shape == enc["log_var"].shape == (len(x), 2)
    decoder = FAMILY.capability(Capability.DECODE)
    assert decoder.latent_dim(PixelVAEParams(latent_dim=2)) == 2
    assert decoder.rows is not None and decoder.rows(module) == module.sample_rows(1)
    out = decoder(module, enc["mean"], None)
    assert out.shape == (len(x), 9) and set(out.unique().tolist()) <= {0.0, 0.5, 1.0}
    assert torch.equal(out, decoder(module, enc["mean"], None))  # seeded: same z, same image
    lp = FAMILY.capability(Capability.LOG_PROB)(module, x, None, 5)
    assert not lp.exact and lp.k == 5 and lp.kind == "bound" and lp.log_prob.shape == (len(x),)
    assert bool((lp.log_prob < 0).all())
    log_prob = FAMILY.capability(Capability.LOG_PROB)
    sample = FAMILY.capability(Capability.SAMPLE)
    complete = FAMILY.capability(Capability.COMPLETE)
    field = FAMILY.capability(Capability.RECEPTIVE_FIELD)
    labels = torch.zeros(len(x), dtype=torch.long)
    observed = torch.arange(9) < 3
    bad: list[tuple[str, Any]] = [
        ("inputs", lambda: log_prob(module, x * 0.3, None, 1)),  # off the levels
        ("inputs", lambda: log_prob(module, x[:, :8], None, 1)),
        ("labels", lambda: log_prob(module, x, labels, 1)),
        ("inputs", lambda: FAMILY.capability(Capability.ENCODE)(module, x * 0.3, None)),
        ("labels", lambda: FAMILY.capability(Capability.ENCODE)(module, x, labels)),
        ("latents", lambda: decoder(module, torch.zeros(2, 3), None)),
        ("latents", lambda: decoder(module, torch.full((2, 2), float("nan")), None)),
        ("labels", lambda: decoder(module, torch.zeros(2, 2), labels[:2])),
        ("temperature", lambda: sample(module, SampleOptions(n=2, temperature=0.0))),
        ("label", lambda: sample(module, SampleOptions(n=2, label=1))),
        ("n", lambda: sample(module, SampleOptions(n=11, max_rows=module.sample_rows(10)))),
        ("label", lambda: complete(module, x, observed, SampleOptions(n=len(x), label=1))),
        ("inputs", lambda: complete(module, x * 0.3, observed, SampleOptions(n=len(x)))),
        ("n", lambda: complete(module, x, observed, SampleOptions(n=len(x), max_rows=10))),
        ("position", lambda: field(module, 9)),
    ]
    for expected, call in bad:
        with pytest.raises(OptionError) as err:
            call()
        assert err.value.field == expected, (expected, str(err.value))
    assert sample(module, SampleOptions(n=10, max_rows=module.sample_rows(10))).shape == (10, 9)
    rf = field(module, 4)
    assert rf.shape == (9,) and bool((rf[4:] == 0).all()) and bool((rf[:4] > 0).any())


def test_a_tiny_fit_lowers_the_test_bound_and_logs_the_kl() -> None:
    data = tiny("digits_bin", n_train=128, n_eval=32)
    params = PixelVAEParams(latent_dim=2, hidden=16, channels=8, decoder_layers=1, k_eval=5)
    torch.manual_seed(0)
    module = FAMILY.build(params, data.info)
    assert isinstance(module, PixelVAE)
    module.eval()
    before = pixelvae.test_metrics(module, data, 5, 0)["test_iwae_nll"]
    ctx = LocalContext(epochs=4, batch_size=32)
    FAMILY.fit(module, data, params, ctx)
    ((_, after),) = ctx.metric("test_iwae_nll")
    assert after < before - 1.0
    ((_, bpd),) = ctx.metric("test_iwae_bpd")
    assert bpd == pytest.approx(after / (64 * math.log(2)))
    for name in ("val_elbo", "val_kl", "val_loss", "active_units"):
        assert len(ctx.metric(name)) == 4, name
    assert all(kl >= 0 for _, kl in ctx.metric("val_kl"))
    ((_, elbo),) = ctx.metric("test_elbo")
    assert -elbo >= after - 0.5  # the bound with k = 5 is no worse than the ELBO (noise aside)
    ((_, seconds),) = ctx.metric("sample_seconds_per_image")
    assert 0 < seconds < 60
    ((_, k),) = ctx.metric("test_k")
    assert k == 5


def test_a_factorised_decoder_has_no_receptive_field() -> None:
    module = model(3, 3, decoder_layers=0)
    with pytest.raises(Unsupported, match="factorised"):
        FAMILY.capability(Capability.RECEPTIVE_FIELD)(module, 4)
