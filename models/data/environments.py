"""Environments: a gymnasium environment named by its id, with the spaces a policy is
built from. No data is stored (the agent makes it by interaction); gymnasium is imported
only by ``make``, never when this module is.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from models.data.info import DataInfo, declare_kind
from models.data.kinds import DataSize, describe_common, digest

ENVIRONMENT = declare_kind("environment", frozenset({"control"}))


@dataclass(frozen=True)
class Space:
    """A gymnasium space, described: ``discrete`` (``n`` choices) or ``box`` (real
    vectors of ``shape`` within ``low`` and ``high``, per element or one bound for all)."""

    type: Literal["discrete", "box"]
    shape: tuple[int, ...] = ()
    n: int | None = None
    low: float | tuple[float, ...] | None = None
    high: float | tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if (self.type == "discrete") != (self.n is not None):
            raise ValueError("a discrete space has n choices, and only a discrete space does")

    @property
    def dim(self) -> int:
        """Values in one element: 1 for a discrete choice."""
        return 1 if self.type == "discrete" else math.prod(self.shape)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "shape": list(self.shape),
            "n": self.n,
            "low": list(self.low) if isinstance(self.low, tuple) else self.low,
            "high": list(self.high) if isinstance(self.high, tuple) else self.high,
        }


@dataclass(frozen=True)
class Environment:
    name: str
    env_id: str  # gymnasium's id, e.g. "CartPole-v1"
    observation: Space
    action: Space
    max_episode_steps: int | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)  # JSON, for make()
    description: str = ""
    # "module:function" that registers env_id with gymnasium when it does not know it yet
    # (MinAtar's ids live in their own namespace: "minatar.gym:register_envs")
    registers: str | None = None

    def make(self, **overrides: Any) -> Any:
        """A new gymnasium environment (gymnasium imported here, in the worker only)."""
        import gymnasium  # an optional dependency of the families that use it

        if self.registers is not None and self.env_id not in gymnasium.registry:
            module, function = self.registers.split(":")
            getattr(importlib.import_module(module), function)()
        kwargs = {**self.kwargs, **overrides}
        if self.max_episode_steps is not None:
            kwargs.setdefault("max_episode_steps", self.max_episode_steps)
        return gymnasium.make(self.env_id, **kwargs)

    @property
    def info(self) -> DataInfo:
        discrete = self.action.type == "discrete"
        return DataInfo(
            name=self.name,
            task="control",
            input_shape=self.observation.shape if self.observation.type == "box" else (1,),
            target_dim=self.action.dim,
            n_classes=self.action.n if discrete else None,  # the number of discrete actions
            n_train=0,
            kind=ENVIRONMENT,
            extra=self._header(),
        )

    def _header(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "observation": self.observation.to_json(),
            "action": self.action.to_json(),
            "max_episode_steps": self.max_episode_steps,
            "kwargs": dict(self.kwargs),
        }

    def fingerprint(self) -> str:
        return digest({"kind": ENVIRONMENT, **self._header()})

    def size(self) -> DataSize:
        return DataSize(examples=0, values=0)

    def describe(self) -> dict[str, Any]:
        return describe_common(self, shape=None, sizes={})
