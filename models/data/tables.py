"""Tensor tables and image sets: six tensors, (x, y) for train, val and test.

The vector sets (``moons``, ``sine_gap``, uploads) are tensor tables; ``digits`` and
``mnist5k`` are image sets, tables whose ``DataInfo`` also gives each example's
``image_shape`` (and the grey levels).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.data.info import IMAGE_SET, DataInfo, Task, TaskInfo
from models.data.kinds import DataSize, describe_common

SPLITS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


@dataclass(frozen=True)
class TensorTable:
    """Float32 inputs; float32 targets (N, target_dim) for regression and multitask,
    int64 (N,) labels for classification."""

    info: DataInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    description: str = ""

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, k) for k in SPLITS)

    def fingerprint(self) -> str:
        """sha256 of the six tensors' bytes (the ``dataset_sha256`` of every job so far)."""
        h = hashlib.sha256()
        for t in self.tensors():
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    sha256 = fingerprint

    def size(self) -> DataSize:
        return DataSize(
            examples=len(self.x_train) + len(self.x_val) + len(self.x_test),
            values=sum(t.numel() for t in self.tensors()),
        )

    def describe(self) -> dict[str, Any]:
        sizes = {"train": len(self.x_train), "val": len(self.x_val), "test": len(self.x_test)}
        return describe_common(self, shape=[self.info.n_train, *self.info.input_shape], sizes=sizes)


@dataclass(frozen=True)
class ImageSet(TensorTable):
    """A tensor table of flattened images: ``info.image_shape`` is (channels, height, width)."""

    def __post_init__(self) -> None:
        if self.info.image_shape is None:
            raise ValueError(f"{self.info.name}: an image set needs info.image_shape")


def split(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    task: Task,
    *,
    seed: int,
    val: float = 0.1,
    test: float = 0.2,
    n_classes: int | None = None,
    tasks: tuple[TaskInfo, ...] = (),
    image_shape: tuple[int, ...] | None = None,
    levels: tuple[int, float] | None = None,
    description: str = "",
) -> TensorTable:
    """Shuffle once with a fixed seed and cut into train / val / test."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_test, n_val = round(test * len(x)), round(val * len(x))
    te, va, tr = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return from_arrays(
        name,
        task,
        (x[tr], y[tr]),
        (x[va], y[va]),
        (x[te], y[te]),
        n_classes=n_classes,
        tasks=tasks,
        image_shape=image_shape,
        levels=levels,
        description=description,
    )


def from_arrays(
    name: str,
    task: Task,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    n_classes: int | None = None,
    tasks: tuple[TaskInfo, ...] = (),
    image_shape: tuple[int, ...] | None = None,
    levels: tuple[int, float] | None = None,
    description: str = "",
) -> TensorTable:
    """A tensor table from (x, y) arrays per split; ``tasks`` for a multitask set,
    ``image_shape`` (an image set) and ``levels`` = (count, top value) for images and
    discrete data (see DataInfo)."""
    if (task == "multitask") != bool(tasks):
        raise ValueError("a multitask set lists its tasks, and only a multitask set does")

    def xs(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    def ys(a: np.ndarray) -> torch.Tensor:
        if task == "classification":
            return torch.as_tensor(np.asarray(a, dtype=np.int64).reshape(-1))
        a = np.asarray(a, dtype=np.float32)
        return torch.as_tensor(a.reshape(len(a), -1))

    y_train = ys(train[1])
    if tasks and sum(t.dim for t in tasks) != y_train.shape[1]:
        raise ValueError(
            f"tasks take {sum(t.dim for t in tasks)} columns, y has {y_train.shape[1]}"
        )
    info = DataInfo(
        name=name,
        task=task,
        input_shape=tuple(np.asarray(train[0]).shape[1:]),
        target_dim=1 if task == "classification" else int(y_train.shape[1]),
        n_classes=n_classes,
        n_train=len(train[0]),
        tasks=tasks,
        image_shape=image_shape,
        levels=None if levels is None else int(levels[0]),
        value_max=None if levels is None else float(levels[1]),
    )
    return table_of(
        info,
        (xs(train[0]), y_train, xs(val[0]), ys(val[1]), xs(test[0]), ys(test[1])),
        description,
    )


def table_of(
    info: DataInfo, tensors: tuple[torch.Tensor, ...], description: str = ""
) -> TensorTable:
    """The six tensors (in ``SPLITS`` order) as the class ``info.kind`` names."""
    cls = ImageSet if info.kind == IMAGE_SET else TensorTable
    x_train, y_train, x_val, y_val, x_test, y_test = tensors
    return cls(info, x_train, y_train, x_val, y_val, x_test, y_test, description)
