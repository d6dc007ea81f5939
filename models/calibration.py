"""Calibration of predictive distributions: proper scores, interval coverage, reliability.

Proper scoring rules (Gneiting & Raftery 2007): the log score (NLL) and the Brier score
(Brier 1950); expected calibration error and reliability diagrams as in Guo et al. 2017.

Pure functions on tensors (no ``app`` or ``workers``): the runner logs them for
the test split at the end of a job, the API draws them, a notebook calls them.

Conventions (natural logarithms, nats; means over test points):

- Regression, Gaussian predictive ``N(mean, total_var)`` per output dimension:
  ``nll`` = mean over points of ``-Σ_d log N(y_d; mean_d, total_var_d)``;
  ``rmse`` = ``sqrt(mean over points and dims of (y - mean)²)``;
  ``coverage(level)`` = fraction of (point, dim) pairs inside the central
  interval ``mean ± z·sqrt(total_var)``, ``z = Φ⁻¹(½ + level/2)``, and
  ``width(level)`` = the mean of ``2·z·sqrt(total_var)`` (raw target units).
  The calibration curve is observed coverage against nominal level.
- Classification, predictive probabilities ``p`` (N, C) and labels ``y`` (N,):
  ``nll`` = mean ``-log p_y`` (p clamped at 1e-12); ``accuracy`` of the argmax;
  ``brier`` = mean over points of ``Σ_c (p_c - 1[y=c])²`` (the original multi-class
  Brier score, range [0, 2]; not divided by C); ``ece`` = top-label expected
  calibration error (Guo et al. 2017): confidence = max_c p_c, binned into
  ``n_bins`` equal-width bins of [0, 1] (15 by default; a confidence of exactly
  1 falls into the last bin, the bins are (lo, hi] except the first, [0, hi]),
  ``ece = Σ_b (n_b / N) |acc_b - conf_b|``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import torch
from torch import Tensor

from models.uncertainty import gaussian_nll

DEFAULT_BINS = 15
DEFAULT_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def z_score(level: float) -> float:
    """Half-width of the central ``level`` interval of N(0, 1): Φ⁻¹(½ + level/2)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


# --- regression -----------------------------------------------------------------------------
def regression_nll(y: Tensor, mean: Tensor, var: Tensor) -> float:
    """Mean Gaussian NLL per point, summed over output dims: y, mean, var (N, D)."""
    return float(gaussian_nll(y, mean, var.clamp_min(1e-12)).mean())


def rmse(y: Tensor, mean: Tensor) -> float:
    return float((y - mean).pow(2).mean().sqrt())


def interval_coverage(
    y: Tensor, mean: Tensor, var: Tensor, level: float = 0.95
) -> tuple[float, float]:
    """(observed coverage, mean width) of the central ``level`` interval, over all (N, D)."""
    half = z_score(level) * var.clamp_min(0).sqrt()
    inside = ((y - mean).abs() <= half).float().mean()
    return float(inside), float((2 * half).mean())


def calibration_curve(
    y: Tensor, mean: Tensor, var: Tensor, levels: Sequence[float] = DEFAULT_LEVELS
) -> list[dict[str, float]]:
    """Observed coverage against nominal level: ``[{"level", "coverage", "width"}, ...]``."""
    out = []
    for level in levels:
        coverage, width = interval_coverage(y, mean, var, level)
        out.append({"level": float(level), "coverage": coverage, "width": width})
    return out


def regression_metrics(
    y: Tensor, mean: Tensor, var: Tensor, level: float = 0.95
) -> dict[str, float]:
    """``nll``, ``rmse``, ``coverage_{100·level}``, ``width_{100·level}``."""
    coverage, width = interval_coverage(y, mean, var, level)
    tag = f"{100 * level:g}".replace(".", "_")
    return {
        "nll": regression_nll(y, mean, var),
        "rmse": rmse(y, mean),
        f"coverage_{tag}": coverage,
        f"width_{tag}": width,
    }


# --- classification -------------------------------------------------------------------------
def classification_nll(probs: Tensor, y: Tensor) -> float:
    return float(-probs.gather(1, y[:, None]).clamp_min(1e-12).log().mean())


def accuracy(probs: Tensor, y: Tensor) -> float:
    return float((probs.argmax(-1) == y).float().mean())


def brier(probs: Tensor, y: Tensor) -> float:
    """Mean over points of Σ_c (p_c − 1[y=c])² (range [0, 2])."""
    onehot = torch.nn.functional.one_hot(y, probs.shape[-1]).to(probs.dtype)
    return float((probs - onehot).pow(2).sum(-1).mean())


@dataclass(frozen=True)
class Bin:
    lower: float
    upper: float
    count: int
    confidence: float | None  # mean top-label confidence in the bin (None when empty)
    accuracy: float | None  # fraction correct in the bin


def reliability_bins(probs: Tensor, y: Tensor, n_bins: int = DEFAULT_BINS) -> list[Bin]:
    """Top-label reliability diagram: equal-width confidence bins of [0, 1]."""
    conf, pred = probs.max(-1)
    correct = (pred == y).double()
    # bin b holds confidences in (b/n, (b+1)/n]; ceil - 1 puts exactly b/n in bin b-1
    idx = (torch.ceil(conf.double() * n_bins).long() - 1).clamp(0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        bins.append(
            Bin(
                lower=b / n_bins,
                upper=(b + 1) / n_bins,
                count=n,
                confidence=float(conf[mask].double().mean()) if n else None,
                accuracy=float(correct[mask].mean()) if n else None,
            )
        )
    return bins


def ece(probs: Tensor, y: Tensor, n_bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error: Σ_b (n_b / N) |acc_b − conf_b| over non-empty bins."""
    total = len(y)
    return sum(
        b.count / total * abs(b.accuracy - b.confidence)
        for b in reliability_bins(probs, y, n_bins)
        if b.accuracy is not None and b.confidence is not None
    )


def classification_metrics(
    probs: Tensor, y: Tensor, n_bins: int = DEFAULT_BINS
) -> dict[str, float]:
    """``nll``, ``accuracy``, ``brier``, ``ece``."""
    return {
        "nll": classification_nll(probs, y),
        "accuracy": accuracy(probs, y),
        "brier": brier(probs, y),
        "ece": ece(probs, y, n_bins),
    }


# --- a family's predictive on a split -------------------------------------------------------
PredictFn = Callable[[torch.nn.Module, Tensor, int], dict[str, Any]]


def predict_batched(
    predict: PredictFn, module: torch.nn.Module, x: Tensor, mc_samples: int, batch_size: int = 512
) -> dict[str, Tensor]:
    """``predict`` over ``x`` in batches, the tensor outputs concatenated along axis 0."""
    parts: list[dict[str, Any]] = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            parts.append(predict(module, x[start : start + batch_size], mc_samples))
    keys = [k for k, v in parts[0].items() if isinstance(v, Tensor) and v.dim() >= 1]
    return {k: torch.cat([p[k].detach().cpu() for p in parts]) for k in keys}


def predictive_metrics(
    out: dict[str, Tensor], y: Tensor, task: str, level: float = 0.95
) -> dict[str, float] | None:
    """The metrics of a predict output against targets, or None when it lacks the summaries
    (regression needs ``mean`` and ``total_var`` shaped like y; classification ``probs``)."""
    y = y.cpu()
    if task == "regression":
        mean, var = out.get("mean"), out.get("total_var")
        if mean is None or var is None or mean.shape != y.shape or var.shape != y.shape:
            return None
        return regression_metrics(y, mean.double(), var.double(), level)
    probs = out.get("probs")
    if probs is None or probs.dim() != 2 or len(probs) != len(y):
        return None
    return classification_metrics(probs.double(), y)
