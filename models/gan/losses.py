"""The GAN objectives, each a function of D's logits l (D = σ(l)), means over the batch:
BCE for D with one-sided label smoothing (Salimans et al. 2016), the minimax and
non-saturating G losses (Goodfellow et al. 2014), the maximum-likelihood G loss
(Goodfellow 2014b), the Wasserstein critic and G losses (Arjovsky et al. 2017), the
gradient penalty (Gulrajani et al. 2017) and R1 (Mescheder et al. 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ML_LOGIT_CAP = 20.0  # max_likelihood: exp(l) weights are exact for l ≤ 20 (D ≤ 1 − 2e-9)


def d_loss_bce(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """−E log D(x) − E log(1 − D(G(z))), real target 1 − α (one-sided smoothing)."""
    real_target = torch.full_like(real, 1.0 - smoothing)
    return F.binary_cross_entropy_with_logits(
        real, real_target
    ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))


def minimax_g_loss(fake: Tensor) -> Tensor:
    """E log(1 − D(G(z))) = −E softplus(l): saturates (gradient −σ(l) → 0) as l → −∞."""
    return -F.softplus(fake).mean()


def non_saturating_g_loss(fake: Tensor) -> Tensor:
    """−E log D(G(z)) = E softplus(−l)."""
    return F.softplus(-fake).mean()


def max_likelihood_g_loss(fake: Tensor, cap: float = ML_LOGIT_CAP) -> Tensor:
    """J_G = −½ E exp(σ⁻¹(D(G(z)))) = −½ E exp(l), stable for any logit.

    Written as −½ E[w · (1 + l − sg(l))] with w = sg(exp(min(l, cap))) (sg: stop-gradient):
    its value is −½ E w and its gradient in each l_i is −½ w_i / B, both exactly J_G's
    for l ≤ cap. Above the cap the weight stays exp(cap) instead of overflowing to inf
    (float32 does at l ≈ 88.7), and, unlike ``exp(l.clamp(max=cap))``, the gradient does
    not vanish there.
    """
    w = torch.exp(fake.detach().clamp(max=cap))
    return -0.5 * (w * (1.0 + fake - fake.detach())).mean()


def wasserstein_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """The critic minimises E f(G(z)) − E f(x) (maximises the W1 estimate)."""
    return fake.mean() - real.mean()


def wasserstein_g_loss(fake: Tensor) -> Tensor:
    return -fake.mean()


def gradient_penalty(
    critic: nn.Module, real: Tensor, fake: Tensor, eps: Tensor, y: Tensor | None = None
) -> Tensor:
    """Gulrajani et al. 2017, eq. 3: E (‖∇_x̂ f(x̂)‖₂ − 1)², x̂ = ε x + (1 − ε) x̃.

    real, fake (B, D); eps (B, 1). The norm is per critic input: per pack of m samples.
    """
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = critic(x_hat, y)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    grad = grad[: len(out) * (len(grad) // max(len(out), 1))].reshape(len(out), -1)
    return (grad.norm(2, dim=1) - 1).pow(2).mean()


def r1_penalty(real_logits: Tensor, x: Tensor) -> Tensor:
    """Mescheder et al. 2018, eq. 9 without γ/2: E ‖∇ D‖² over D's real inputs, from the
    logits (one per input: per pack of m samples) and the batch x they were computed from,
    x requiring grad. A pack's squared gradient norm is the sum over its members'."""
    (grad,) = torch.autograd.grad(real_logits.sum(), x, create_graph=True)
    return grad.pow(2).sum() / max(len(real_logits), 1)


G_LOSSES = {
    "minimax": minimax_g_loss,
    "non_saturating": non_saturating_g_loss,
    "max_likelihood": max_likelihood_g_loss,
    "wasserstein": wasserstein_g_loss,
}
