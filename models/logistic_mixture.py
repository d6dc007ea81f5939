"""The discretised logistic mixture likelihood of PixelCNN++ (Salimans, Karpathy, Chen &
Kingma 2017, §2.1), for one grey channel; shared maths, no family of its own.

A pixel with L levels 0..L − 1 is read on [−1, 1]: level l sits at x_l = 2l / (L − 1) − 1,
and its bin is [x_l − δ, x_l + δ] with the half-width δ = 1 / (L − 1). With K components
(mixture logits π, means μ, log scales log s),

    P(l) = Σ_k softmax(π)_k · [σ((x_l + δ − μ_k) / s_k) − σ((x_l − δ − μ_k) / s_k)],

except at the edges, whose bins reach to infinity: P(0) integrates from −∞ (the first term
alone), P(L − 1) to +∞ (1 minus the second). The bins tile the line, so the L
probabilities of one component sum to 1 exactly. As in the paper's code:

- log s is clamped at −7 (``LOG_SCALE_MIN``; below it the gradient is 0);
- where a middle bin's probability is below 1e-5 (``TINY_BIN``; in float32 the difference
  of two sigmoids near 1 is mostly rounding there), its log is taken as the density at the
  bin's centre times its width: log pdf(x_l) − log((L − 1) / 2). This is off from the
  bin's mass by a relative O((δ / s)²), so a pixel's L probabilities sum to 1 within about
  1e-5 (tested), not to the last bit;
- the edge logs are log σ(a) = a − softplus(a) and log(1 − σ(b)) = −softplus(b), stable
  for any a, b.

``temperature`` T (sampling): the mixture weights softmax(π / T) and the scales s · T (log s
clamped first, then + log T). T = 1 is the model; T < 1 picks the likeliest component more
often and narrows each logistic towards its mean (T → 0: the likeliest component's mean,
rounded to its level); T > 1 flattens both. ``mixture_log_prob`` takes the same T, so the
tempered distribution that sampling draws from can be written down (and is tested).

Colour (not needed by the zoo's grey data): the paper models R, G, B of a pixel with one
shared mixture indicator and means linear in the channels already seen,
μ_G = μ_G' + α x_R and μ_B = μ_B' + β x_R + γ x_G (α, β, γ = tanh of extra outputs), so
10 K outputs per pixel (K logits; 3 K means, log scales and coefficients) instead of our
3 K; the log-probabilities of the three channels add inside each component, before the
log-sum-exp over components.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_SCALE_MIN = -7.0  # log scales are clamped here (the paper's code)
TINY_BIN = 1e-5  # a middle bin below this probability takes the midpoint density instead
PARAMS_PER_COMPONENT = 3  # one channel: a logit, a mean and a log scale


def split(out: Tensor, components: int) -> tuple[Tensor, Tensor, Tensor]:
    """Network outputs (B, 3K, ...) -> mixture logits, means, log scales, each (B, K, ...)."""
    logits, means, log_scales = out.split(components, 1)
    return logits, means, log_scales


def centre(idx: Tensor, levels: int, dtype: torch.dtype) -> Tensor:
    """Level indices -> their value x_l = 2l / (L − 1) − 1 in [−1, 1]."""
    return idx.to(dtype) * (2.0 / (levels - 1)) - 1.0


def bin_log_probs(idx: Tensor, means: Tensor, log_scales: Tensor, levels: int) -> Tensor:
    """log P(level idx) under each component (B, K, ...): ``idx`` (B, ...) level indices,
    ``means``, ``log_scales`` (B, K, ...); edges to ±∞, the 1e-5 fallback, the −7 clamp."""
    idx = idx.unsqueeze(1)
    x = centre(idx, levels, means.dtype)
    half = 1.0 / (levels - 1)
    log_s = log_scales.clamp(min=LOG_SCALE_MIN)
    inv_s = torch.exp(-log_s)
    centred = x - means
    plus = inv_s * (centred + half)
    minus = inv_s * (centred - half)
    log_cdf_plus = plus - F.softplus(plus)  # log σ(plus): the bin of level 0, from −∞
    log_sf_minus = -F.softplus(minus)  # log(1 − σ(minus)): the bin of level L − 1, to +∞
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centred
    log_pdf_mid = mid - log_s - 2.0 * F.softplus(mid)  # the logistic density at x_l
    middle = torch.where(
        delta > TINY_BIN,
        torch.log(delta.clamp(min=1e-12)),  # clamped: no NaN gradient from the other branch
        log_pdf_mid - math.log((levels - 1) / 2),
    )
    return torch.where(idx == 0, log_cdf_plus, torch.where(idx == levels - 1, log_sf_minus, middle))


def mixture_log_prob(
    idx: Tensor,
    logits: Tensor,
    means: Tensor,
    log_scales: Tensor,
    levels: int,
    temperature: float = 1.0,
) -> Tensor:
    """log P(idx) (B, ...) of level indices ``idx`` (B, ...) under the mixture whose
    parameters are (B, K, ...) each; at ``temperature`` T: logits / T, log scales
    (clamped) + log T (the distribution ``sample_levels`` draws from)."""
    if temperature != 1.0:
        logits = logits / temperature
        log_scales = log_scales.clamp(min=LOG_SCALE_MIN) + math.log(temperature)
    per_component = bin_log_probs(idx, means, log_scales, levels)
    return torch.logsumexp(logits.log_softmax(1) + per_component, 1)


def sample_levels(
    logits: Tensor,
    means: Tensor,
    log_scales: Tensor,
    levels: int,
    temperature: float,
    gen: torch.Generator,
) -> Tensor:
    """Level indices (n,) drawn from n pixels' mixtures (parameters (n, K) each): a
    component from softmax(logits / T) by the inverse CDF of one uniform, then a logistic
    value μ + s · T · log(u / (1 − u)) by the inverse CDF of another (in float64), clipped
    to [−1, 1] and rounded to the nearest level: the level whose bin holds the value (the
    edge bins reach to ±∞), so the draw follows ``mixture_log_prob`` at T exactly (but for
    the 1e-5 fallback's midpoint approximation of tiny bins)."""
    n, dev = len(logits), logits.device
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64, device=gen.device).to(dev)
    cdf = torch.softmax(logits.double() / temperature, 1).cumsum(1)  # (n, K)
    k = (u[:, :1] > cdf).sum(1, keepdim=True).clamp(max=logits.shape[1] - 1)
    mu = means.double().gather(1, k).squeeze(1)
    log_s = log_scales.double().gather(1, k).squeeze(1).clamp(min=LOG_SCALE_MIN)
    v = u[:, 1].clamp(1e-12, 1 - 1e-12)
    x = mu + torch.exp(log_s) * temperature * (torch.log(v) - torch.log1p(-v))
    level = ((x.clamp(-1.0, 1.0) + 1.0) * ((levels - 1) / 2)).round()
    return level.long().clamp(0, levels - 1)
