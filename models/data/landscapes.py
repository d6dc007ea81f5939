"""Loss landscapes: a function to minimise from a start point, for the optimizer lab.

The function is one of ``FUNCTIONS`` (named, with its parameters), written in torch so an
optimizer can follow its gradient and autograd can give its Hessian: Rosenbrock 1960,
Himmelblau 1972, Rastrigin 1974, Beale 1958, a bounded saddle, an ill-conditioned
quadratic in any dimension, and the logistic loss of a real data set. Each takes points
``w`` (..., d) and returns the loss (...); all but the quadratic are 2-D.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import torch

from models.data.info import DataInfo, declare_kind
from models.data.kinds import DataSize, describe_common, digest

LANDSCAPE = declare_kind("landscape", frozenset({"minimize"}))

Fn = Callable[[torch.Tensor, Mapping[str, float]], torch.Tensor]


def rosenbrock(w: torch.Tensor, p: Mapping[str, float]) -> torch.Tensor:
    x, y = w[..., 0], w[..., 1]
    a, b = p.get("a", 1.0), p.get("b", 100.0)
    return (a - x) ** 2 + b * (y - x**2) ** 2  # minimum 0 at (a, a²)


def himmelblau(w: torch.Tensor, p: Mapping[str, float]) -> torch.Tensor:
    x, y = w[..., 0], w[..., 1]
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2  # four minima of 0


def rastrigin(w: torch.Tensor, p: Mapping[str, float]) -> torch.Tensor:
    x, y = w[..., 0], w[..., 1]
    a = p.get("a", 10.0)
    return 2 * a + x**2 - a * torch.cos(2 * math.pi * x) + y**2 - a * torch.cos(2 * math.pi * y)


def beale(w: torch.Tensor, p: Mapping[str, float]) -> torch.Tensor:
    """Beale's function: minimum 0 at (3, 0.5), flat plateaus and steep walls."""
    x, y = w[..., 0], w[..., 1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def saddle(w: torch.Tensor, p: Mapping[str, float]) -> torch.Tensor:
    """x² + y⁴/4 − y²/2: a saddle point at the origin (Hessian diag(2, −1)), minima −1/4 at
    (0, ±1). Started near y = 0 a gradient method must escape the saddle's flat direction;
    Newton's method, which seeks a zero of the gradient, is drawn to the saddle itself."""
    x, y = w[..., 0], w[..., 1]
    return x**2 + y**4 / 4 - y**2 / 2


@cache
def quadratic_matrix(dim: int, condition_number: float) -> torch.Tensor:
    """A = Q diag(λ) Qᵀ (float64, (dim, dim)): eigenvalues spaced geometrically from 1 to
    ``condition_number`` (for dim 2: just the two), eigenvectors Q the orthogonal factor of
    a fixed-seed Gaussian matrix, so the valley lies along no axis (a diagonal rescaling,
    RMSProp's and Adam's, cannot undo it)."""
    g = torch.Generator().manual_seed(20261202)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # the unique Q with a positive diagonal R
    lam = torch.logspace(0, math.log10(condition_number), dim, dtype=torch.float64)
    return (q * lam) @ q.T


def quadratic(w: torch.Tensor, p: Mapping[str, float]) -> torch.Tensor:
    """½ wᵀAw with A's condition number ``p["condition_number"]`` (``quadratic_matrix``):
    minimum 0 at the origin, any dimension (the last of ``w``)."""
    a = quadratic_matrix(w.shape[-1], float(p.get("condition_number", 10.0)))
    a = a.to(dtype=w.dtype, device=w.device)
    return 0.5 * torch.einsum("...i,ij,...j->...", w, a, w)


@cache
def logistic_data() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's breast cancer set (Wolberg et al. 1995, shipped: no download), 569
    tumours: the feature "worst radius" standardised (float64) and the label 1 where
    malignant."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    column = list(data.feature_names).index("worst radius")
    x = torch.tensor(data.data[:, column], dtype=torch.float64)
    y = torch.tensor(data.target == 0, dtype=torch.float64)  # target 0 is "malignant"
    return (x - x.mean()) / x.std(correction=0), y


def logistic(w: torch.Tensor, p: Mapping[str, float]) -> torch.Tensor:
    """The mean cross-entropy of logistic regression σ(w₀x + w₁) on ``logistic_data``: a
    small real loss, convex, its minimum (≈ 0.2013 at ≈ (5.572, −0.402)) found numerically."""
    x, y = logistic_data()
    x, y = x.to(dtype=w.dtype, device=w.device), y.to(dtype=w.dtype, device=w.device)
    z = w[..., 0, None] * x + w[..., 1, None]  # (..., n) logits
    return (torch.nn.functional.softplus(z) - y * z).mean(-1)  # −log σ(±z) averaged


FUNCTIONS: dict[str, Fn] = {
    "rosenbrock": rosenbrock,
    "himmelblau": himmelblau,
    "rastrigin": rastrigin,
    "beale": beale,
    "saddle": saddle,
    "quadratic": quadratic,
    "logistic": logistic,
}
ANY_DIMENSION = frozenset({"quadratic"})  # the others are 2-D


@dataclass(frozen=True)
class Landscape:
    """A function to minimise: ``start`` is the default start point (its length is the
    dimension, 2 unless the function takes any: ``ANY_DIMENSION``), ``bounds`` the (x, y)
    ranges a plot of the first two coordinates shows, ``minima`` the known global minima
    and ``minimum`` their value f*, where known (the lab's tolerance is on f − f*)."""

    name: str
    function: str  # a key of FUNCTIONS
    bounds: tuple[tuple[float, float], tuple[float, float]]  # (x range, y range) to plot
    start: tuple[float, ...]
    params: Mapping[str, float] = field(default_factory=dict, hash=False)
    minima: tuple[tuple[float, ...], ...] = ()  # known global minima, for plots and tests
    description: str = ""
    minimum: float | None = None  # f at the global minima

    def __post_init__(self) -> None:
        if self.function not in FUNCTIONS:
            raise ValueError(f"{self.name}: no function {self.function!r}; {sorted(FUNCTIONS)}")
        if self.dim != 2 and self.function not in ANY_DIMENSION:
            raise ValueError(f"{self.name}: {self.function} is 2-D; the start has {self.dim}")
        if any(len(m) != self.dim for m in self.minima):
            raise ValueError(f"{self.name}: a minimum is not a point of {self.dim} coordinates")

    @property
    def dim(self) -> int:
        """The number of coordinates of a point."""
        return len(self.start)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """The loss at points ``w`` (..., dim) -> (...)."""
        if w.shape[-1] != self.dim:
            raise ValueError(
                f"{self.name} takes points of {self.dim} coordinates, not {w.shape[-1]}"
            )
        return FUNCTIONS[self.function](w, self.params)

    def resized(self, dim: int, **params: float) -> Landscape:
        """The same function in ``dim`` coordinates (``ANY_DIMENSION`` only) with ``params``
        overriding its own: the start keeps its first coordinates and puts 1 on any new
        one; the minima (the origin's, the quadratic's only) are resized with it."""
        if dim != self.dim and self.function not in ANY_DIMENSION:
            raise ValueError(f"{self.name} is 2-D: it takes no dim")
        start = (*self.start[:dim], *([1.0] * max(0, dim - self.dim)))
        minima = tuple((*m[:dim], *([0.0] * max(0, dim - self.dim))) for m in self.minima)
        merged = {**self.params, **params}
        return replace(self, start=start, minima=minima, params=merged)

    def _header(self) -> dict[str, Any]:
        header: dict[str, Any] = {
            "function": self.function,
            "params": dict(self.params),
            "bounds": [list(b) for b in self.bounds],
            "start": list(self.start),
            "minima": [list(m) for m in self.minima],
        }
        if self.minimum is not None:
            header["minimum"] = self.minimum
        return header

    @classmethod
    def from_info(cls, info: DataInfo) -> Landscape:
        """The landscape a ``DataInfo`` (its ``info``, as a job stores it) describes."""
        e = info.extra
        (x0, x1), (y0, y1) = e["bounds"]
        return cls(
            name=info.name,
            function=e["function"],
            bounds=((float(x0), float(x1)), (float(y0), float(y1))),
            start=tuple(float(v) for v in e["start"]),
            params={k: float(v) for k, v in e["params"].items()},
            minima=tuple(tuple(float(v) for v in m) for m in e["minima"]),
            minimum=None if e.get("minimum") is None else float(e["minimum"]),
        )

    @property
    def info(self) -> DataInfo:
        return DataInfo(
            name=self.name,
            task="minimize",
            input_shape=(self.dim,),
            target_dim=1,
            n_classes=None,
            n_train=0,
            kind=LANDSCAPE,
            extra=self._header(),
        )

    def fingerprint(self) -> str:
        return digest({"kind": LANDSCAPE, **self._header()})

    def size(self) -> DataSize:
        return DataSize(examples=0, values=0)

    def describe(self) -> dict[str, Any]:
        return describe_common(self, shape=None, sizes={})  # no rows: a formula
