"""The ``gan`` family: each loss against hand-computed values and torchgan's functional
losses, the gradient penalty, label smoothing, conditional BatchNorm, packing, the
diagnostics, and a short training run on ``rings8``."""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.context import LocalContext
from models.data import load
from models.data.builtin import GRID25_STD, RINGS8_STD, grid25_modes, rings8_modes
from models.gan.family import Trainer, decode, sample
from models.gan.losses import (
    d_loss_bce,
    gradient_penalty,
    max_likelihood_g_loss,
    minimax_g_loss,
    non_saturating_g_loss,
    r1_penalty,
    wasserstein_d_loss,
    wasserstein_g_loss,
)
from models.gan.metrics import js_cells, mode_metrics
from models.gan.nets import ConditionalBatchNorm, GANParams, build
from models.generative import OptionError, SampleOptions
from models.registry import REGISTRY
from tests.support.data import tiny


def _torchgan_functional() -> types.ModuleType:
    """torchgan's ``losses/functional.py`` alone: ``torchgan/__init__.py`` imports
    torchvision, which is not installed. The file's one relative import, ``..utils``
    (which imports only torch and pkgutil), resolves inside a stand-in package."""
    spec = importlib.util.find_spec("torchgan")
    if spec is None or not spec.submodule_search_locations:
        # make test installs it (Makefile, --no-deps): a missing peer is a failure, not a
        # silent skip that would let the loss comparisons stop running unnoticed
        pytest.fail("torchgan is not installed: run make test, or pip install --no-deps torchgan")
    root = Path(next(iter(spec.submodule_search_locations)))
    name = "_torchgan_stub"
    if f"{name}.losses.functional" in sys.modules:
        return sys.modules[f"{name}.losses.functional"]
    for pkg, path in ((name, root), (f"{name}.losses", root / "losses")):
        stub = types.ModuleType(pkg)
        stub.__path__ = [str(path)]
        sys.modules[pkg] = stub
    fspec = importlib.util.spec_from_file_location(
        f"{name}.losses.functional", root / "losses" / "functional.py"
    )
    assert fspec is not None and fspec.loader is not None
    module = importlib.util.module_from_spec(fspec)
    sys.modules[fspec.name] = module
    fspec.loader.exec_module(module)
    return module


FAKE = torch.tensor([-2.0, 0.0, 3.0])
REAL = torch.tensor([1.0, 2.0])
FAKE_D = torch.tensor([-1.0, 0.5])


# --- losses against hand-computed values ---------------------------------------------------


def test_generator_losses_match_hand_computed_values() -> None:
    # softplus(-2) = 0.126928, softplus(0) = 0.693147, softplus(3) = 3.048587
    assert float(minimax_g_loss(FAKE)) == pytest.approx(-(0.126928 + 0.693147 + 3.048587) / 3)
    # softplus(2) = 2.126928, softplus(-3) = 0.048587
    assert float(non_saturating_g_loss(FAKE)) == pytest.approx((2.126928 + 0.693147 + 0.048587) / 3)
    # -½ (e^-2 + e^0 + e^3) / 3
    assert float(max_likelihood_g_loss(FAKE)) == pytest.approx(
        -0.5 * (0.135335 + 1.0 + 20.085537) / 3, rel=1e-6
    )
    assert float(wasserstein_g_loss(FAKE_D)) == pytest.approx(0.25)


def test_discriminator_losses_match_hand_computed_values() -> None:
    # mean softplus(-real) + mean softplus(fake): (0.313262 + 0.126928)/2 + (0.313262 + 0.974077)/2
    assert float(d_loss_bce(REAL, FAKE_D)) == pytest.approx(0.220095 + 0.643670, abs=1e-6)
    # BCE(l, t) = softplus(l) - t l; real targets 0.9: (1.313262 - 0.9 + 2.126928 - 1.8) / 2
    assert float(d_loss_bce(REAL, FAKE_D, 0.1)) == pytest.approx(0.370095 + 0.643670, abs=1e-6)
    assert float(wasserstein_d_loss(REAL, FAKE_D)) == pytest.approx(-0.25 - 1.5)


def test_minimax_gradient_vanishes_where_non_saturating_does_not() -> None:
    """Early on D rejects fakes (l ≪ 0): ∂/∂l of log(1 − σ(l)) is −σ(l) → 0, of
    −log σ(l) it is −σ(−l) → −1."""
    logits = torch.full((4,), -10.0, requires_grad=True)
    (g_mm,) = torch.autograd.grad(minimax_g_loss(logits), logits)
    (g_ns,) = torch.autograd.grad(non_saturating_g_loss(logits), logits)
    torch.testing.assert_close(g_mm, -torch.sigmoid(logits.detach()) / 4)
    assert g_mm.abs().max() < 1e-4 and (g_ns + 0.25).abs().max() < 1e-4


def test_max_likelihood_is_exact_below_the_cap_and_stable_above() -> None:
    moderate = torch.linspace(-5, 8, 7, requires_grad=True)
    (g,) = torch.autograd.grad(max_likelihood_g_loss(moderate), moderate)
    exact = moderate.detach().clone().requires_grad_(True)
    ref = -0.5 * exact.exp().mean()
    (g_ref,) = torch.autograd.grad(ref, exact)
    torch.testing.assert_close(max_likelihood_g_loss(moderate.detach()), ref.detach())
    torch.testing.assert_close(g, g_ref)

    huge = torch.tensor([1e4, 100.0, 0.0, -1e4], requires_grad=True)
    naive = -0.5 * huge.detach().exp().mean()
    assert not torch.isfinite(naive)  # the formula as written overflows
    loss = max_likelihood_g_loss(huge)
    (g_huge,) = torch.autograd.grad(loss, huge)
    assert torch.isfinite(loss) and torch.isfinite(g_huge).all()
    cap = -0.5 * math.exp(20.0) / 4
    assert float(g_huge[0]) == pytest.approx(cap) and float(g_huge[1]) == pytest.approx(cap)
    assert float(g_huge[2]) == pytest.approx(-0.5 / 4) and float(g_huge[3]) == 0.0


# --- against torchgan -----------------------------------------------------------------------


def test_losses_match_torchgan() -> None:
    tg = _torchgan_functional()
    gen = torch.Generator().manual_seed(0)
    dx, dgz = torch.randn(16, generator=gen) * 3, torch.randn(16, generator=gen) * 3
    close = torch.testing.assert_close
    close(minimax_g_loss(dgz), tg.minimax_generator_loss(dgz, nonsaturating=False))
    close(non_saturating_g_loss(dgz), tg.minimax_generator_loss(dgz, nonsaturating=True))
    for alpha in (0.0, 0.1, 0.3):
        close(d_loss_bce(dx, dgz, alpha), tg.minimax_discriminator_loss(dx, dgz, alpha))
    close(wasserstein_g_loss(dgz), tg.wasserstein_generator_loss(dgz))
    close(wasserstein_d_loss(dx, dgz), tg.wasserstein_discriminator_loss(dx, dgz))


def test_gradient_penalty_matches_torchgan_per_sample() -> None:
    """torchgan's penalty takes the norm of the whole batch's gradient, (‖∇‖_F − 1)², not
    per sample as in Gulrajani et al.: the two agree one sample at a time."""
    tg = _torchgan_functional()
    torch.manual_seed(0)
    critic = _Critic()
    real, fake, eps = torch.randn(6, 2), torch.randn(6, 2), torch.rand(6, 1)
    ours = gradient_penalty(critic, real, fake, eps)
    theirs = []
    for i in range(6):
        x_hat = (eps[i] * real[i : i + 1] + (1 - eps[i]) * fake[i : i + 1]).requires_grad_(True)
        theirs.append(tg.wasserstein_gradient_penalty(x_hat, critic(x_hat)))
    torch.testing.assert_close(ours, torch.stack(theirs).mean())


class _Critic(nn.Module):
    def __init__(self, pack: int = 1) -> None:
        super().__init__()
        self.pack = pack
        self.net = nn.Sequential(nn.Linear(2 * pack, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor, y: Any = None) -> torch.Tensor:
        return self.net(x.reshape(len(x) // self.pack, -1)).squeeze(-1)


# --- gradient penalty against a manual computation -------------------------------------------


def test_gradient_penalty_of_a_linear_critic_is_exact() -> None:
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0]]))  # ‖∇f‖ = 5 everywhere
    critic = lambda x, y=None: lin(x).squeeze(-1)  # noqa: E731
    gp = gradient_penalty(critic, torch.randn(5, 2), torch.randn(5, 2), torch.rand(5, 1))
    assert float(gp.detach()) == pytest.approx(16.0)


@pytest.mark.parametrize("pack", [1, 2])
def test_gradient_penalty_matches_manual_autograd(pack: int) -> None:
    torch.manual_seed(1)
    critic = _Critic(pack)
    real, fake, eps = torch.randn(8, 2), torch.randn(8, 2), torch.rand(8, 1)
    manual = []
    x_hat = eps * real + (1 - eps) * fake
    for j in range(8 // pack):  # one critic input: a pack of m samples
        xj = x_hat[j * pack : (j + 1) * pack].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(critic(xj).sum(), xj)
        manual.append((g.flatten().norm() - 1) ** 2)
    ours = gradient_penalty(critic, real, fake, eps)
    torch.testing.assert_close(ours, torch.stack(manual).mean())
    # and it is differentiable in the critic's weights (create_graph)
    ours.backward()
    first = critic.net[0].weight.grad
    assert first is not None and bool(first.abs().sum() > 0)


# --- R1 penalty -------------------------------------------------------------------------------


def test_r1_penalty_of_hand_derived_discriminators() -> None:
    """D(x) = w·x + b has ∇D = w: the penalty is ‖w‖² = 25; D(x) = ‖x‖² has ∇D = 2x: the
    penalty is E 4‖x‖²."""
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0]]))
    x = torch.randn(5, 2).requires_grad_(True)
    assert float(r1_penalty(lin(x).squeeze(-1), x).detach()) == pytest.approx(25.0)
    x = torch.randn(7, 2).requires_grad_(True)
    expected = float((4 * x.detach().pow(2).sum(1)).mean())
    assert float(r1_penalty(x.pow(2).sum(1), x).detach()) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("pack", [1, 2])
def test_r1_penalty_matches_manual_autograd_per_critic_input(pack: int) -> None:
    torch.manual_seed(2)
    critic = _Critic(pack)
    real = torch.randn(8, 2)
    manual = []
    for j in range(8 // pack):
        xj = real[j * pack : (j + 1) * pack].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(critic(xj).sum(), xj)
        manual.append(g.pow(2).sum())
    x = real.clone().requires_grad_(True)
    ours = r1_penalty(critic(x), x)
    torch.testing.assert_close(ours, torch.stack(manual).mean())
    ours.backward()  # differentiable in D's weights (create_graph)
    first = critic.net[0].weight.grad
    assert first is not None and bool(first.abs().sum() > 0)


def test_r1_adds_its_penalty_to_the_discriminator_step() -> None:
    """The same D step (same weights, same fakes) with γ = 4 reports the BCE loss plus
    γ/2 · E‖∇_x D(x)‖² at the weights before the step."""
    x = load("rings8").x_train[:32]
    losses = {}
    for gamma in (0.0, 4.0):
        torch.manual_seed(0)
        params = GANParams(r1=gamma, hidden_d=[8], hidden_g=[8])
        module = build(params, load("rings8").info)
        if gamma:
            xr = x.clone().requires_grad_(True)
            expected_penalty = float(r1_penalty(module.d(xr), xr).detach())
        losses[gamma] = Trainer(module, params, LocalContext(steps=1, seed=3)).d_step(x, None, 0)
    assert losses[4.0] == pytest.approx(losses[0.0] + 2.0 * expected_penalty, rel=1e-5)


# --- label smoothing --------------------------------------------------------------------------


def test_label_smoothing_touches_only_real_targets() -> None:
    """∂BCE(l, t)/∂l = σ(l) − t: smoothing moves the real gradient by α/N, never the fake."""
    real, fake = REAL.clone().requires_grad_(True), FAKE_D.clone().requires_grad_(True)
    grads = {}
    for alpha in (0.0, 0.2):
        grads[alpha] = torch.autograd.grad(d_loss_bce(real, fake, alpha), (real, fake))
    torch.testing.assert_close(grads[0.0][1], grads[0.2][1])
    torch.testing.assert_close(grads[0.2][1], torch.sigmoid(FAKE_D) / 2)
    torch.testing.assert_close(grads[0.2][0], (torch.sigmoid(REAL) - 0.8) / 2)
    torch.testing.assert_close(grads[0.2][0] - grads[0.0][0], torch.full((2,), 0.1))


# --- conditional BatchNorm, conditioning, packing ---------------------------------------------


def test_conditional_batchnorm_selects_per_class_gamma_and_beta() -> None:
    cbn = ConditionalBatchNorm(3, n_classes=4)
    with torch.no_grad():
        cbn.gamma.weight.copy_(torch.arange(12.0).view(4, 3) + 1)
        cbn.beta.weight.copy_(-torch.arange(12.0).view(4, 3))
    x, y = torch.randn(8, 3), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    out = cbn(x, y)
    x_hat = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + cbn.bn.eps)  # shared stats
    torch.testing.assert_close(out, cbn.gamma.weight[y] * x_hat + cbn.beta.weight[y])
    # images: γ_y, β_y per channel, broadcast over space
    cbn2 = ConditionalBatchNorm(2, n_classes=3, dims=2).eval()
    with torch.no_grad():
        cbn2.gamma.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    img = torch.randn(2, 2, 4, 4)
    out2 = cbn2(img, torch.tensor([2, 0]))  # eval: running stats 0, 1
    scale = torch.tensor([[5.0, 6.0], [1.0, 2.0]])[:, :, None, None]
    torch.testing.assert_close(out2, scale * img / math.sqrt(1 + cbn2.bn.eps))


def test_conditional_gan_routes_labels_and_refuses_a_missing_one() -> None:
    info = load("rings8").info
    torch.manual_seed(0)
    module = build(GANParams(conditional=True, hidden_g=[16], hidden_d=[16]), info)
    gen = module.g
    with torch.no_grad():  # make class 3 visibly different in its CBN
        gen.norms[0].norm.beta.weight[3] += 5.0
    z = torch.randn(4, module.latent_dim)
    a, b = decode(module, z, torch.tensor([0])), decode(module, z, torch.tensor([3]))
    assert not torch.allclose(a, b)
    with pytest.raises(OptionError) as err:
        decode(module, z, None)
    assert err.value.field == "label"
    s = sample(module, SampleOptions(n=5, seed=3, label=3))
    torch.testing.assert_close(s, sample(module, SampleOptions(n=5, seed=3, label=3)))


def test_unconditional_gan_refuses_a_label_and_repeats_a_seed() -> None:
    module = build(GANParams(hidden_g=[16], hidden_d=[16]), load("moons").info)
    a = sample(module, SampleOptions(n=9, seed=11))
    torch.testing.assert_close(a, sample(module, SampleOptions(n=9, seed=11)))
    assert not torch.equal(a, sample(module, SampleOptions(n=9, seed=12)))
    with pytest.raises(OptionError) as err:
        sample(module, SampleOptions(n=2, label=1))
    assert err.value.field == "label"


def test_packing_gives_one_logit_per_pack() -> None:
    module = build(GANParams(pack=4, hidden_d=[8]), load("grid25").info)
    assert module.d(torch.randn(10, 2)).shape == (2,)  # 2 packs; the 2 left over are dropped
    conv = build(GANParams(pack=2, conv_width=4, conditional=True), load("digits").info)
    assert conv.d(torch.rand(6, 64) * 16, torch.arange(6)).shape == (3,)


def test_weight_clipping_bounds_every_critic_weight() -> None:
    params = GANParams(loss="wasserstein", wasserstein_constraint="clip", hidden_d=[8])
    assert params.n_critic() == 5 and GANParams().n_critic() == 1
    module = build(params, load("rings8").info)
    tr = Trainer(module, params, LocalContext(steps=1))
    tr.d_step(load("rings8").x_train[:32], None, 0)
    assert max(float(p.detach().abs().max()) for p in module.d.parameters()) <= 0.01


# --- diagnostics --------------------------------------------------------------------------


def test_mode_metrics_follow_the_protocol() -> None:
    modes = grid25_modes()
    exact = np.repeat(modes, 100, axis=0)  # 2,500 samples, 100 per mode
    m = mode_metrics(exact, modes, GRID25_STD)
    assert (m["modes"], m["modes_strict"], m["hq"]) == (25, 25, 1.0)
    collapsed = np.tile(modes[:1], (2500, 1)) + 0.1  # all near one mode, within 3σ = 0.15
    m = mode_metrics(collapsed, modes, GRID25_STD)
    assert (m["modes"], m["hq"]) == (1, 1.0) and m["js_modes"] > 0.5
    off = np.zeros((2500, 2)) + 1.0  # half-way between modes: none high quality
    assert mode_metrics(off, modes, GRID25_STD)["hq"] == 0.0
    # one stray high-quality sample covers a mode (VEEGAN), not a strict one
    one = exact.copy()
    one[:100] = modes[1]
    one[0] = modes[0]
    m = mode_metrics(one, modes, GRID25_STD)
    assert (m["modes"], m["modes_strict"]) == (25, 24)


def test_js_of_data_from_the_mixture_itself_is_near_zero() -> None:
    rng = np.random.default_rng(0)
    modes = rings8_modes()
    x = modes[rng.integers(0, 8, 2500)] + RINGS8_STD * rng.normal(size=(2500, 2))
    m = mode_metrics(x, modes, RINGS8_STD)
    assert m["modes"] == 8 and m["hq"] > 0.98 and m["js_modes"] < 0.005
    assert js_cells(np.zeros(8, dtype=int), 2500, 8) == pytest.approx(
        0.5 * math.log(2) * (1 - math.exp(-4.5)) + _js_tail(), abs=1e-6
    )


def _js_tail() -> float:
    """JS contribution of the off-mode cell when every sample is off-mode (q = 1 there)."""
    p = math.exp(-4.5)
    m = (p + 1) / 2
    return 0.5 * p * math.log(p / m) + 0.5 * math.log(1 / m)


# --- training --------------------------------------------------------------------------------


@pytest.mark.slow  # trains to quality
def test_short_rings8_training_covers_several_modes() -> None:
    fam, data = REGISTRY["gan"], load("rings8")
    params = fam.params(loss="non_saturating", pack=4, hidden_g=[64, 64], hidden_d=[64, 64])
    torch.manual_seed(0)
    module = fam.build(params, data.info)
    ctx = LocalContext(steps=700, batch_size=128, seed=0)
    fam.fit(module, data, params, ctx)
    last = ctx.history[-1][1]
    assert {"d_real", "d_fake", "g_grad_norm", "js_from_d", "modes", "hq", "js_modes"} <= set(last)
    assert last["modes"] >= 6, last
    first = ctx.history[0][1]
    assert last["js_modes"] < first["js_modes"]


def test_image_diagnostics_and_conv_samples() -> None:
    fam, data = REGISTRY["gan"], tiny("digits")
    params = fam.params(conv_width=8, conditional=True)
    module = fam.build(params, data.info)
    ctx = LocalContext(epochs=1, batch_size=32)
    fam.fit(module, data, params, ctx)
    last = ctx.history[-1][1]
    assert 1 <= last["classes_covered"] <= 10 and last["classifier_val_accuracy"] > 0.9
    assert sum(last[f"class_frac_{c}"] for c in range(10)) == pytest.approx(1.0)
    x = sample(module, SampleOptions(n=4, seed=0, label=7))
    assert x.shape == (4, 64) and 0 <= float(x.min()) and float(x.max()) <= 16


def test_minimax_logs_a_smaller_generator_gradient_than_non_saturating() -> None:
    """The vanishing gradient as the logged diagnostic shows it: with D rejecting every fake
    (its output bias at −10, D(G(z)) ≈ 4.5e-5), G's gradient norm under minimax is σ(l)/σ(−l)
    ≈ e^−10 of the non-saturating one, the same direction otherwise."""
    data = load("rings8")
    norms = {}
    for loss in ("minimax", "non_saturating"):
        params = GANParams(loss=loss, hidden_g=[32], hidden_d=[32])
        torch.manual_seed(0)
        module = build(params, data.info)
        with torch.no_grad():
            module.d.net[-1].weight.zero_()
            module.d.net[-1].bias.fill_(-10.0)
            module.d.net[-1].weight[0, 0] = 1e-3  # a little signal to pass back
        tr = Trainer(module, params, LocalContext(steps=1))
        norms[loss] = tr.g_step(data.x_train[:64], None, 0)[1]
    assert norms["minimax"] / norms["non_saturating"] == pytest.approx(math.exp(-10), rel=0.01)


def test_bce_losses_agree_with_their_definitions_in_probabilities() -> None:
    """Cross-check the logit forms against the notes' formulas in D = σ(l)."""
    d = torch.sigmoid(FAKE)
    torch.testing.assert_close(minimax_g_loss(FAKE), torch.log(1 - d).mean())
    torch.testing.assert_close(non_saturating_g_loss(FAKE), -torch.log(d).mean())
    torch.testing.assert_close(
        max_likelihood_g_loss(FAKE), -0.5 * torch.exp(torch.logit(d)).mean(), rtol=1e-5, atol=1e-5
    )
    dr = torch.sigmoid(REAL)
    torch.testing.assert_close(
        d_loss_bce(REAL, FAKE_D),
        -(torch.log(dr).mean() + torch.log(1 - torch.sigmoid(FAKE_D)).mean()),
    )
    assert F.softplus(torch.tensor(0.0)) == pytest.approx(math.log(2))
