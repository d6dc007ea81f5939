"""Observation models p(x|z) and Gaussian densities for latent-variable models, as pure
functions of tensors. Every log-likelihood sums over the last dimension (the data's D
values) and returns one number per row, in nats.

- Bernoulli: binary x, the decoder outputs logits.
- Gaussian: a density; on discrete data it is paired with uniform dequantisation
  (``models.generative``) so that a bound on the discrete data's log-probability can be
  reported.
- Discretised logistic (Salimans et al. 2017, PixelCNN++, eq. 2 with one component):
  the probability mass of a logistic over each level's bin, with the outer bins
  stretched to ±∞, so it is the exact log-probability of discrete data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)
MIN_LOG_SCALE = -7.0  # σ ≥ e⁻⁷ ≈ 1e-3: below mnist5k's bin width (1/255) over √12


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """Σ_d x log σ(l) + (1-x) log(1-σ(l)); x, logits (..., D) -> (...)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def gaussian_log_prob(x: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """log N(x; mean, diag(exp(log_var))); (..., D) -> (...)."""
    return -0.5 * (LOG_2PI + log_var + (x - mean).pow(2) / log_var.exp()).sum(-1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I); (..., K) -> (...). The one copy: the flows' base density, the VAEs'
    prior. (The constant is added once per row, not per value: one op fewer on (..., K).)"""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)


def gaussian_kl(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ (μ² + σ² - 1 - log σ²) (Kingma & Welling 2014,
    appendix B); (..., K) -> (...)."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor, bin: float) -> Tensor:
    """log P(x) of levels 0, bin, 2·bin, ..., 1 under a logistic(mean, e^log_scale) whose
    mass is gathered per bin [x - bin/2, x + bin/2], the end bins reaching ±∞.

    log(σ(a) - σ(b)) with a = (x + bin/2 - μ)/s, b = (x - bin/2 - μ)/s is computed as
    ``-b + log(1 - e^{-(a-b)}) - softplus(-a) - softplus(-b)``, stable in both tails.
    """
    log_scale = log_scale.clamp_min(MIN_LOG_SCALE)
    inv_s = torch.exp(-log_scale)
    a = (x - mean + bin / 2) * inv_s
    b = (x - mean - bin / 2) * inv_s
    width = bin * inv_s  # a - b > 0
    mid = -b + torch.log(-torch.expm1(-width)) - F.softplus(-a) - F.softplus(-b)
    lowest = -F.softplus(-a)  # log σ(a): the bin (-∞, bin/2]
    highest = -F.softplus(b)  # log(1 - σ(b)): the bin [1 - bin/2, ∞)
    out = torch.where(x < bin / 2, lowest, torch.where(x > 1 - bin / 2, highest, mid))
    return out.sum(-1)
