"""Loss landscapes: a 2-D function to minimise from a start point, for the optimizer lab.

The function is one of ``FUNCTIONS`` (named, with its parameters), written in torch so an
optimizer can follow its gradient: Rosenbrock 1960, Himmelblau 1972, Rastrigin 1974.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from models.data.info import DataInfo, declare_kind
from models.data.kinds import DataSize, describe_common, digest

LANDSCAPE = declare_kind("landscape", frozenset({"minimize"}))

Fn = Callable[[torch.Tensor, torch.Tensor, Mapping[str, float]], torch.Tensor]


def rosenbrock(x: torch.Tensor, y: torch.Tensor, p: Mapping[str, float]) -> torch.Tensor:
    a, b = p.get("a", 1.0), p.get("b", 100.0)
    return (a - x) ** 2 + b * (y - x**2) ** 2  # minimum 0 at (a, a²)


def himmelblau(x: torch.Tensor, y: torch.Tensor, p: Mapping[str, float]) -> torch.Tensor:
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2  # four minima of 0


def rastrigin(x: torch.Tensor, y: torch.Tensor, p: Mapping[str, float]) -> torch.Tensor:
    a = p.get("a", 10.0)
    return 2 * a + x**2 - a * torch.cos(2 * math.pi * x) + y**2 - a * torch.cos(2 * math.pi * y)


FUNCTIONS: dict[str, Fn] = {
    "rosenbrock": rosenbrock,
    "himmelblau": himmelblau,
    "rastrigin": rastrigin,
}


@dataclass(frozen=True)
class Landscape:
    name: str
    function: str  # a key of FUNCTIONS
    bounds: tuple[tuple[float, float], tuple[float, float]]  # (x range, y range) to plot
    start: tuple[float, float]
    params: Mapping[str, float] = field(default_factory=dict, hash=False)
    minima: tuple[tuple[float, float], ...] = ()  # known global minima, for plots and tests
    description: str = ""

    def __post_init__(self) -> None:
        if self.function not in FUNCTIONS:
            raise ValueError(f"{self.name}: no function {self.function!r}; {sorted(FUNCTIONS)}")

    def __call__(self, xy: torch.Tensor) -> torch.Tensor:
        """The loss at points ``xy`` (..., 2) -> (...)."""
        return FUNCTIONS[self.function](xy[..., 0], xy[..., 1], self.params)

    def _header(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "params": dict(self.params),
            "bounds": [list(b) for b in self.bounds],
            "start": list(self.start),
            "minima": [list(m) for m in self.minima],
        }

    @property
    def info(self) -> DataInfo:
        return DataInfo(
            name=self.name,
            task="minimize",
            input_shape=(2,),
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
        return describe_common(self, shape=[2], sizes={})
