"""An in-memory training context: run a family's ``fit`` in a notebook, a test or a benchmark."""

from __future__ import annotations

import time
from typing import Any

import torch

from models.optim import OptimizerSpec, build_optimizer


class LocalContext:
    """Implements ``models.family.Context`` with no database: metrics go to ``self.history``."""

    def __init__(
        self,
        *,
        epochs: int | None = None,
        steps: int | None = None,
        batch_size: int = 64,
        seed: int = 0,
        optimizer: OptimizerSpec | None = None,
        device: str | torch.device = "cpu",
        resume: dict[str, Any] | None = None,
        keep_checkpoints: bool = False,
        best: dict[str, Any] | None = None,
    ) -> None:
        """``best``: on a resume, the state of the best checkpoint before it (the runner
        keeps it in the database), so ``best_model`` answers as in an unbroken run."""
        if (epochs is None) == (steps is None):
            raise ValueError("give exactly one of epochs or steps")
        self.epochs, self.steps, self.batch_size, self.seed = epochs, steps, batch_size, seed
        self.optimizer_spec = optimizer or OptimizerSpec()
        self.device = torch.device(device)
        self.resume = resume
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.history: list[tuple[int, dict[str, float]]] = []
        self.checkpoints: list[tuple[int, dict[str, Any], bool]] = []
        self.keep_checkpoints = keep_checkpoints
        self.best: dict[str, Any] | None = best
        self.last_progress: tuple[int, int] | None = None
        self.started = time.perf_counter()

    def make_optimizer(
        self, params: Any, *, weight_decay: float | None = None
    ) -> torch.optim.Optimizer:
        return build_optimizer(self.optimizer_spec, params, weight_decay=weight_decay)

    def log(self, step: int, **metrics: float) -> None:
        self.history.append((step, {k: float(v) for k, v in metrics.items()}))

    def checkpoint(self, step: int, state: dict[str, Any], *, best: bool = False) -> None:
        if self.keep_checkpoints:
            self.checkpoints.append((step, state, best))
        if best:
            self.best = state

    def best_model(self) -> dict[str, torch.Tensor] | None:
        return None if self.best is None else self.best["model"]

    def update_served(self, model: dict[str, torch.Tensor]) -> None:
        """The best state's model, else the latest kept checkpoint's, replaced by ``model``."""
        if self.best is not None:
            served = self.best
            self.best = {**served, "model": model}
        elif self.checkpoints:
            served = self.checkpoints[-1][1]
        else:
            return
        self.checkpoints = [
            (s, {**state, "model": model} if state is served else state, best)
            for s, state, best in self.checkpoints
        ]

    def should_stop(self) -> bool:
        return False

    def progress(self, step: int, total: int) -> None:
        self.last_progress = (step, total)

    def metric(self, name: str) -> list[tuple[int, float]]:
        """The logged curve of one metric as (step, value) pairs."""
        return [(s, m[name]) for s, m in self.history if name in m]
