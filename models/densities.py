"""Known 2-D target densities for variational inference (a flow trained by reverse KL).

Each target is an unnormalised log density log p̃(x) on (N, 2) points. Where a
built-in dataset's generating density is known in closed form (the ``rings8`` and
``grid25`` Gaussian mixtures) it is a target too, normalised (log Z = 0). The energies
are those of Rezende & Mohamed 2015 (Table 1) and a banana; their log Z, mean and
variance come from quadrature on a fine grid, so a fit can be scored against the truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Literal

import torch
from torch import Tensor

from models.data.builtin import GRID25_STD, RINGS8_STD, grid25_modes, rings8_modes

TargetName = Literal["dataset", "ring_u1", "banana"]
LogDensity = Callable[[Tensor], Tensor]  # (N, 2) -> (N,)

# datasets whose generating density is known: name -> (mode centres (K, 2), std)
KNOWN_DATASETS = {"rings8": (rings8_modes, RINGS8_STD), "grid25": (grid25_modes, GRID25_STD)}


@dataclass(frozen=True)
class TargetStats:
    """The normalised target's log Z, mean (2,) and total variance tr Cov."""

    log_z: float
    mean: tuple[float, float]
    total_var: float


def mixture_log_density(modes: Tensor, std: float) -> LogDensity:
    """Equal-weight isotropic Gaussian mixture, normalised."""

    def log_p(x: Tensor) -> Tensor:
        sq = (x[:, None, :] - modes.to(x)).pow(2).sum(-1)  # (N, K)
        log_n = -sq / (2 * std**2) - math.log(2 * math.pi * std**2)
        return torch.logsumexp(log_n, dim=1) - math.log(len(modes))

    return log_p


def ring_u1(x: Tensor) -> Tensor:
    """Rezende & Mohamed 2015, U1: a ring of radius 2 with two lobes at z₁ = ±2."""
    r = x.norm(dim=-1)
    lobes = torch.stack([-0.5 * ((x[:, 0] - 2) / 0.6) ** 2, -0.5 * ((x[:, 0] + 2) / 0.6) ** 2])
    return -0.5 * ((r - 2) / 0.4) ** 2 + torch.logsumexp(lobes, dim=0)


def banana(x: Tensor) -> Tensor:
    """x₁ ~ N(0, 1), x₂ | x₁ ~ N(x₁²/2 − 1, 0.5²), unnormalised (drops the constants)."""
    return -0.5 * x[:, 0] ** 2 - 0.5 * ((x[:, 1] - 0.5 * x[:, 0] ** 2 + 1) / 0.5) ** 2


def target_log_density(target: TargetName, dataset: str) -> LogDensity:
    """The target of a reverse-KL job; ``dataset`` only where the dataset's density is known."""
    if target == "ring_u1":
        return ring_u1
    if target == "banana":
        return banana
    if dataset not in KNOWN_DATASETS:
        raise ValueError(
            f"target 'dataset' needs a dataset whose density is known ({sorted(KNOWN_DATASETS)}); "
            f"{dataset!r} is known only through samples: pick target 'ring_u1' or 'banana'"
        )
    modes, std = KNOWN_DATASETS[dataset]
    return mixture_log_density(torch.as_tensor(modes(), dtype=torch.float32), std)


@cache
def target_stats(target: TargetName, dataset: str) -> TargetStats:
    """Exact moments of a mixture; quadrature on a 1,601² grid over [-8, 8]² otherwise."""
    if target == "dataset":
        modes_fn, std = KNOWN_DATASETS[dataset]
        modes = torch.as_tensor(modes_fn(), dtype=torch.float64)
        var = float(modes.var(0, unbiased=False).sum()) + 2 * std**2
        m = modes.mean(0)
        return TargetStats(0.0, (float(m[0]), float(m[1])), var)
    g = torch.linspace(-8, 8, 1601, dtype=torch.float64)
    h = float(g[1] - g[0])
    x = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    log_p = target_log_density(target, dataset)(x)
    log_z = float(torch.logsumexp(log_p, 0)) + 2 * math.log(h)
    w = torch.softmax(log_p, 0)[:, None]
    mean = (w * x).sum(0)
    var = float((w * (x - mean).pow(2)).sum())
    return TargetStats(log_z, (float(mean[0]), float(mean[1])), var)
