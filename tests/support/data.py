"""Sliced built-in datasets, and a context that records like the runner."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import torch

from models.context import LocalContext
from models.data import DataKind, Dataset, TensorTable, from_arrays, load, load_data


@cache
def tiny(name: str, n_train: int = 160, n_eval: int = 40) -> Dataset:
    """The first rows of each split of a built-in set (its own fixed split, just fewer rows)."""
    d = load(name)
    info = d.info

    def cut(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[Any, Any]:
        return x[:n].numpy(), y[:n].numpy()

    return from_arrays(
        name,
        info.task,
        cut(d.x_train, d.y_train, n_train),
        cut(d.x_val, d.y_val, n_eval),
        cut(d.x_test, d.y_test, n_eval),
        n_classes=info.n_classes,
        tasks=info.tasks,
        image_shape=info.image_shape,
        levels=None if info.levels is None else (info.levels, info.value_max or 1.0),
    )


def smoke_data(name: str) -> DataKind:
    """``tiny(name)`` for a tensor table; any other kind (an environment) as it is: it
    holds no rows to cut."""
    return tiny(name) if isinstance(load_data(name), TensorTable) else load_data(name)


class RecordingContext(LocalContext):
    """LocalContext that also snapshots the RNG states at each checkpoint, as the runner does,
    and can ask the family to stop after a number of ``should_stop`` polls."""

    def __init__(self, *, stop_after: int | None = None, **kwargs: Any) -> None:
        super().__init__(keep_checkpoints=True, **kwargs)
        self.stop_after = stop_after
        self.polls = 0
        self.rng: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.optimizers: list[torch.optim.Optimizer] = []

    def make_optimizer(
        self, params: Any, *, weight_decay: float | None = None
    ) -> torch.optim.Optimizer:
        opt = super().make_optimizer(params, weight_decay=weight_decay)
        self.optimizers.append(opt)
        return opt

    def checkpoint(self, step: int, state: dict[str, Any], *, best: bool = False) -> None:
        super().checkpoint(step, copy.deepcopy(state), best=best)
        self.rng.append((torch.get_rng_state(), self.generator.get_state()))

    def served(self) -> dict[str, Any]:
        """The checkpoint inference would serve: the last one offered as best, else the
        latest (as the runner points ``Job.checkpoint_id``)."""
        best = [state for _, state, is_best in self.checkpoints if is_best]
        return best[-1] if best else self.checkpoints[-1][1]

    def should_stop(self) -> bool:
        self.polls += 1
        return self.stop_after is not None and self.polls > self.stop_after

    def set_rng(self, snapshot: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Restore another context's snapshot, as the runner does on resume."""
        torch.set_rng_state(snapshot[0])
        self.generator.set_state(snapshot[1])
