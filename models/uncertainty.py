"""Uncertainty from T stochastic forward passes, and the losses that train it.

Pure functions on tensors, shared by every predictive family (MC dropout,
deep ensembles, a plain MLP with T = 1).

- Regression (Kendall & Gal 2017, eq. 9): with per-pass means μ_t and noise
  variances σ_t², the predictive mixture has
  ``Var[y] = Var_t[μ_t] + E_t[σ_t²]`` = epistemic + aleatoric.
- Classification (Houlsby et al. 2011; Gal, Islam & Ghahramani 2017): with
  per-pass probabilities p_t, ``H[E_t p_t]`` (predictive entropy, total) =
  ``E_t H[p_t]`` (expected entropy, aleatoric) + mutual information (epistemic,
  the BALD score). Natural logarithms: nats.
- Model precision of MC dropout (Gal & Ghahramani 2016, §4 and appendix):
  ``τ = l² (1-p) / (2 N λ)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)
TAU_GRID = torch.logspace(-2, 4, 121, dtype=torch.float64)  # noise var 1e-4..1e2 of Var[y]

# The generator stochastic inference layers (MC dropout's masks) draw from, when set: a
# context variable, so each request (thread or task) has its own and none touches the
# global RNG that other requests and training use.
_GENERATOR: ContextVar[torch.Generator | None] = ContextVar("inference_generator", default=None)


@contextmanager
def seeded_inference(seed: int) -> Iterator[torch.Generator]:
    """Stochastic passes under this block draw from a CPU generator seeded with ``seed``:
    the same seed and inputs give the same passes, whatever other threads do."""
    gen = torch.Generator().manual_seed(seed)
    token = _GENERATOR.set(gen)
    try:
        yield gen
    finally:
        _GENERATOR.reset(token)


def inference_generator() -> torch.Generator | None:
    """The generator of the enclosing ``seeded_inference`` block, or None."""
    return _GENERATOR.get()


def regression_summary(means: Tensor, variances: Tensor | None = None) -> dict[str, Tensor]:
    """Mixture moments of T Gaussian predictions: means, variances (T, N, D) -> (N, D) each.

    ``epistemic_var`` is the population variance of the means across passes
    (divide by T, not T-1: it is the variance of the equally weighted mixture).
    """
    mean = means.mean(0)
    epistemic = means.var(0, unbiased=False)  # exactly 0 for T = 1
    aleatoric = torch.zeros_like(mean) if variances is None else variances.mean(0)
    return {
        "mean": mean,
        "epistemic_var": epistemic,
        "aleatoric_var": aleatoric,
        "total_var": epistemic + aleatoric,
    }


def entropy(probs: Tensor) -> Tensor:
    """Shannon entropy in nats over the last axis; 0 log 0 = 0."""
    return -torch.xlogy(probs, probs).sum(-1)


def classification_summary(probs: Tensor) -> dict[str, Tensor]:
    """Entropy decomposition of T categorical predictions: probs (T, N, C) -> (N, C) and (N,)."""
    mean = probs.mean(0)
    predictive = entropy(mean)  # H[E_t p_t], total
    expected = entropy(probs).mean(0)  # E_t H[p_t], aleatoric
    # Jensen: H is concave so predictive >= expected; the clamp only removes round-off
    mutual_information = (predictive - expected).clamp_min(0.0)
    return {
        "probs": mean,
        "predictive_entropy": predictive,
        "expected_entropy": expected,
        "mutual_information": mutual_information,
    }


def gaussian_log_prob(y: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Elementwise log N(y; mean, var)."""
    return -0.5 * (LOG_2PI + var.log() + (y - mean) ** 2 / var)


def gaussian_nll(y: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Negative log-likelihood per point: y, mean, var (N, D) -> (N,), summed over D."""
    return -gaussian_log_prob(y, mean, var).sum(-1)


def heteroscedastic_loss(y: Tensor, mean: Tensor, log_var: Tensor, beta: float = 0.0) -> Tensor:
    """Kendall & Gal 2017, eqs. 5 and 8: batch mean of Σ_d ½ exp(-s)(y-ŷ)² + ½ s, s = log σ².

    This is the Gaussian NLL without its constant ½ log 2π. The seed notes write
    ``‖y-ŷ‖²/σ² + log σ``; the exact NLL has ``log σ²`` there (twice ``log σ``),
    and the whole is scaled by ½, which keeps the balance between the residual
    and the variance term that makes σ² converge to the squared residual.
    Predicting s rather than σ² keeps the loss finite and the variance positive.
    y, mean, log_var: (N, D) -> scalar.

    β-NLL (Seitzer et al. 2022, "On the pitfalls of heteroscedastic uncertainty
    estimation"): with ``beta`` β > 0 each term is weighted by stop-gradient(σ²)^β,
    so the gradient w.r.t. the mean is ``σ^{2β} (ŷ-y)/σ²``: hard points, which the
    plain NLL lets escape into a large σ², keep pulling on the mean (β = 1: the MSE's
    mean gradient). β = 0 is the plain loss above.
    """
    per_dim = 0.5 * torch.exp(-log_var) * (y - mean) ** 2 + 0.5 * log_var
    if beta != 0:
        per_dim = per_dim * torch.exp(beta * log_var.detach())
    return per_dim.sum(-1).mean()


def mc_log_likelihood(y: Tensor, means: Tensor, variances: Tensor) -> Tensor:
    """Per-point MC predictive log-likelihood (Gal & Ghahramani 2016, §5.1).

    ``log (1/T) Σ_t N(y; μ_t, σ_t²) = logsumexp_t log N(y; μ_t, σ_t²) - log T``,
    each Gaussian summed over the D output dimensions.
    y (N, D), means and variances (T, N, D) -> (N,).
    """
    log_p = gaussian_log_prob(y.unsqueeze(0), means, variances).sum(-1)  # (T, N)
    return torch.logsumexp(log_p, dim=0) - math.log(means.shape[0])


def model_precision(
    length_scale: float, dropout_p: float, n_train: int, weight_decay: float
) -> float:
    """τ = l² (1-p) / (2 N λ) (Gal & Ghahramani 2016, eq. 7 and appendix).

    ``dropout_p`` is the probability of *dropping* a unit (the notes' p is the
    keep probability, 1 - dropout_p). ``weight_decay`` is λ of the objective's
    ``λ Σ ‖W‖²``; an optimizer that adds ``wd · w`` to the gradient (torch's
    ``weight_decay``) implements λ = wd / 2. Returns ``inf`` for λ = 0.
    """
    if weight_decay == 0:
        return math.inf
    return length_scale**2 * (1 - dropout_p) / (2 * n_train * weight_decay)


def weight_decay_for_precision(
    length_scale: float, dropout_p: float, n_train: int, tau: float
) -> float:
    """λ = l² (1-p) / (2 N τ): the inverse of ``model_precision`` (same conventions)."""
    return length_scale**2 * (1 - dropout_p) / (2 * n_train * tau)


def sampled_classification_metrics(logits: Tensor, y: Tensor, split: str) -> dict[str, float]:
    """NLL and accuracy of the mean of T (or M) softmaxes: logits (T, N, C), labels (N,).

    ``{split}_loss`` is the NLL (the number a best checkpoint is chosen by).
    """
    p = logits.softmax(-1).mean(0)  # (N, C)
    nll = float(-p.gather(1, y[:, None]).clamp_min(1e-12).log().mean())
    accuracy = float((p.argmax(-1) == y).float().mean())
    return {f"{split}_loss": nll, f"{split}_nll": nll, f"{split}_accuracy": accuracy}


def sampled_regression_metrics(
    y: Tensor, means: Tensor, variances: Tensor, split: str
) -> dict[str, float]:
    """Mixture log-likelihood (``mc_log_likelihood``) and RMSE of the mixture mean:
    y (N, D), means and variances (T, N, D); ``{split}_loss`` is −ll."""
    ll = float(mc_log_likelihood(y, means, variances).mean())
    rmse = float((y - means.mean(0)).pow(2).mean().sqrt())
    return {f"{split}_loss": -ll, f"{split}_rmse": rmse, f"{split}_ll": ll}


def best_tau(means: Tensor, y: Tensor) -> float:
    """τ on ``TAU_GRID`` maximising the MC log-likelihood; means (T, N, D), y (N, D) standardised"""
    sq = (y - means).double().pow(2).sum(-1)  # (T, N)
    d, tau = y.shape[-1], TAU_GRID.to(sq.device)[:, None, None]  # (K, 1, 1)
    log_p = -0.5 * tau * sq + 0.5 * d * (tau.log() - math.log(2 * math.pi))  # (K, T, N)
    ll = (torch.logsumexp(log_p, dim=1) - math.log(len(means))).mean(-1)  # (K,)
    return float(TAU_GRID[int(ll.argmax())])  # int(): the grid stays on the CPU
