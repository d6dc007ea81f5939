"""The notes' identities of section 1 as small functions, each tested against autograd or a
closed form (``tests/models/test_maths.py``).

- eq. 1, variance: Var[X] = E[X²] − E[X]² (``variance``; the two-pass form
  E[(X − E X)²] is what a float computation should use, ``variance_two_pass``: the
  one-pass form loses every digit when the mean is large against the spread).
- eq. 2, the softmax Jacobian: ∂s_i/∂z_j = s_i (δ_ij − s_j), i.e. diag(s) − s sᵀ
  (``softmax_jacobian``).
- eq. 3, Kullback–Leibler divergence: KL(p‖q) = Σ p log(p/q), or ∫ p log(p/q) for
  densities (``kl_discrete``, ``kl_quadrature``), and its closed form between two
  Gaussians (``kl_gaussians``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def variance(x: Tensor, dim: int = -1) -> Tensor:
    """Eq. 1: E[X²] − E[X]² over ``dim`` (the population variance, divisor n)."""
    return (x * x).mean(dim) - x.mean(dim) ** 2


def variance_two_pass(x: Tensor, dim: int = -1) -> Tensor:
    """E[(X − E X)²] over ``dim``: eq. 1's value, computed without its cancellation."""
    return (x - x.mean(dim, keepdim=True)).pow(2).mean(dim)


def softmax_jacobian(z: Tensor) -> Tensor:
    """Eq. 2: the Jacobian of softmax at logits ``z`` (..., k) -> (..., k, k), row i the
    gradient of s_i: diag(s) − s sᵀ. Symmetric, its rows sum to 0 (the outputs sum to 1
    whatever z), and z + c·1 has the same softmax (the null vector 1)."""
    s = z.softmax(-1)
    return torch.diag_embed(s) - s.unsqueeze(-1) * s.unsqueeze(-2)


def kl_discrete(p: Tensor, q: Tensor) -> Tensor:
    """Eq. 3 for distributions on the last axis: Σ p log(p/q), 0 log 0 taken as 0."""
    terms = torch.where(p > 0, p * (p.log() - q.log()), torch.zeros_like(p))
    return terms.sum(-1)


def kl_quadrature(
    log_p: Callable[[Tensor], Tensor], log_q: Callable[[Tensor], Tensor], grid: Tensor
) -> Tensor:
    """Eq. 3 for densities on the real line: ∫ p log(p/q) dx by the trapezoid rule on
    ``grid`` (sorted points covering p's mass)."""
    lp = log_p(grid)
    return torch.trapezoid(lp.exp() * (lp - log_q(grid)), grid)


def kl_gaussians(mu_p: Tensor, sigma_p: Tensor, mu_q: Tensor, sigma_q: Tensor) -> Tensor:
    """KL(N(μp, σp²) ‖ N(μq, σq²)) in closed form:
    log(σq/σp) + (σp² + (μp − μq)²) / (2σq²) − ½."""
    return (sigma_q / sigma_p).log() + (sigma_p**2 + (mu_p - mu_q) ** 2) / (2 * sigma_q**2) - 0.5
