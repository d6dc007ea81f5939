"""The gradients through time made visible: a batch's gradient profile ‖∂ℓ/∂c_k‖ and
‖∂c_T/∂c_k‖ over the steps k, the recurrent weights' spectrum, and global norm clipping."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.family import GRADIENT_METRICS
from models.rnn.model import RNN, example_losses

MAX_POSITIONS = 32  # time steps a gradient profile records (a long sequence is subsampled)
JACOBIAN_EXAMPLES = 4  # probe examples whose Jacobians ∂c_T/∂c_k are taken


def clip_gradients(parameters: list[nn.Parameter], clip_norm: float | None) -> float:
    """Scale every gradient by one factor so that their global L2 norm is at most
    ``clip_norm`` (Pascanu et al. 2013; the direction is kept); returns the norm before."""
    return float(nn.utils.clip_grad_norm_(parameters, math.inf if clip_norm is None else clip_norm))


def positions(length: int) -> Tensor:
    """The 1-based steps a profile records: all of them up to MAX_POSITIONS, else that many
    evenly spread from 1 to T, (K,)."""
    return torch.linspace(1, length, min(length, MAX_POSITIONS)).round().long().unique()


def gradients(module: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """The gradient profile of a batch (x (B, T, F), y): ``positions`` (K,), ``grad_norm``
    (K,) the mean over sequences of ‖∂ℓ/∂c_k‖, ``jacobian_norm`` (K,) the mean over the
    first JACOBIAN_EXAMPLES of the spectral norm ‖∂c_T/∂c_k‖; 0-d ``spectral_radius`` and
    ``w_norm`` of W; for the tanh cell the notes' ``jacobian_bound`` ‖Wᵀ‖·max‖diag σ'‖."""
    assert isinstance(module, RNN)
    dev = module.head.weight.device
    x, y = x.to(dev), y.to(dev)
    at = positions(x.shape[1])
    with torch.enable_grad():
        out, states = module.probe_forward(x)
        kept = [states[k - 1] for k in at.tolist()]
        grads = torch.autograd.grad(example_losses(module, out, y).sum(), kept)
        grad_norm = torch.stack([g.norm(dim=-1).mean() for g in grads])  # (K,)
        jacobian_norm = torch.stack(
            [
                _jacobian_norms(module, x[i : i + 1], at)
                for i in range(min(len(x), JACOBIAN_EXAMPLES))
            ]
        ).mean(0)
    W = module.first.recurrent.detach()
    result = {
        "positions": at,
        "grad_norm": grad_norm.detach(),
        "jacobian_norm": jacobian_norm.detach(),
        "spectral_radius": torch.linalg.eigvals(W).abs().max(),
        "w_norm": torch.linalg.matrix_norm(W, ord=2),
    }
    if module.cell == "tanh":  # σ'(a) = 1 - tanh(a)² = 1 - c²
        slope = max(float((1 - s.detach().pow(2)).max()) for s in states)
        result["jacobian_bound"] = result["w_norm"] * slope
    return result


def _jacobian_norms(module: RNN, x: Tensor, at: Tensor) -> Tensor:
    """‖∂c_T/∂c_k‖₂ for one sequence x (1, T, F) at the steps ``at``, (K,): the Jacobians'
    rows by one batched backward pass (one cotangent per state unit)."""
    states = module.first.steps(x)
    last = states[-1]  # (1, S)
    eye = torch.eye(last.shape[1], dtype=last.dtype, device=last.device)[:, None]  # (S, 1, S)
    rows = torch.autograd.grad(
        last, [states[k - 1] for k in at.tolist()], eye, is_grads_batched=True
    )
    jac = torch.stack([r[:, 0] for r in rows])  # (K, S, S): row i of ∂c_T/∂c_k
    return torch.linalg.matrix_norm(jac, ord=2)


def gradient_metrics(profile: dict[str, Tensor]) -> dict[str, float]:
    """A profile as metrics: ``grad_t{k}``, ``jacobian_t{k}`` per recorded step k, and the
    scalars (spectral radius, norm, bound) under their own names."""
    grad, jac = GRADIENT_METRICS
    metrics = {}
    for i, k in enumerate(profile["positions"].tolist()):
        metrics[f"{grad}{k}"] = float(profile["grad_norm"][i])
        metrics[f"{jac}{k}"] = float(profile["jacobian_norm"][i])
    for name in ("spectral_radius", "w_norm", "jacobian_bound"):
        if name in profile:
            metrics[name] = float(profile[name])
    return metrics
