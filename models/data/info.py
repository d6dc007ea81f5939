"""``DataInfo``: what a model needs to know about its data to be built, as JSON.

Every data kind (``models/data/kinds.py``) describes itself with one: its ``kind`` names
the kind, its ``task`` is one of the tasks that kind declared (``declare_kind``), and
``extra`` holds the kind's own facts (a graph's node count, an environment's spaces).
Jobs store ``to_json()`` in the database, so ``from_json`` reads every JSON ever written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

TaskKind = Literal["regression", "classification"]
# the tasks of tensor tables and image sets (HTTP: ``DatasetOut.task``)
Task = Literal["regression", "classification", "multitask"]

# kind name -> the tasks its data may have; filled by ``declare_kind`` in each kind's module
KIND_TASKS: dict[str, frozenset[str]] = {}

# the two kinds JSON written before kinds existed can hold (it has no ``kind`` key)
TENSOR_TABLE, IMAGE_SET = "tensor_table", "image_set"


def declare_kind(kind: str, tasks: frozenset[str]) -> str:
    """Make ``kind`` known to ``DataInfo`` with the tasks its data may have; returns ``kind``."""
    if KIND_TASKS.get(kind, tasks) != tasks:
        raise ValueError(f"data kind {kind!r} is declared twice with different tasks")
    KIND_TASKS[kind] = tasks
    return kind


declare_kind(TENSOR_TABLE, frozenset(get_args(Task)))
declare_kind(IMAGE_SET, frozenset(get_args(Task)))


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
    Kinds other than tables say what ``input_shape``, ``target_dim``, ``n_classes`` and
    ``n_train`` mean for them (e.g. an environment: observation shape, action dimensions,
    discrete actions, 0 stored examples).
    """

    name: str
    task: str  # one of KIND_TASKS[kind]
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
    # the data kind; "": an image set when ``image_shape`` is given, else a tensor table
    kind: str = ""
    # the kind's own facts, JSON values (not hashed: a DataInfo stays hashable)
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", _implied_kind(self.image_shape))
        tasks = KIND_TASKS.get(self.kind)
        if tasks is None:
            raise ValueError(f"unknown data kind {self.kind!r}; known: {sorted(KIND_TASKS)}")
        if self.task not in tasks:
            raise ValueError(f"a {self.kind} has no task {self.task!r}; it has {sorted(tasks)}")

    def task_list(self) -> tuple[TaskInfo, ...]:
        """The tasks; a single-task set reads as one task named after its kind."""
        if self.tasks:
            return self.tasks
        if self.task == "classification":
            return (TaskInfo("classification", "classification", 1, self.n_classes),)
        return (TaskInfo("regression", "regression", self.target_dim),)

    def to_json(self) -> dict[str, object]:
        """The JSON jobs store; a tensor table's or image set's is what it was before kinds
        existed (no ``kind`` key: it follows from ``image_shape``)."""
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
        if self.kind != _implied_kind(self.image_shape):
            d["kind"] = self.kind
        if self.extra:
            d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> DataInfo:
        return cls(
            name=str(d["name"]),
            task=str(d["task"]),
            input_shape=tuple(d["input_shape"]),  # type: ignore[arg-type]
            target_dim=int(d["target_dim"]),  # type: ignore[call-overload]
            n_classes=None if d["n_classes"] is None else int(d["n_classes"]),  # type: ignore[call-overload]
            n_train=int(d["n_train"]),  # type: ignore[call-overload]
            tasks=tuple(TaskInfo.from_json(t) for t in d.get("tasks") or ()),  # type: ignore[attr-defined]
            image_shape=tuple(d["image_shape"]) if d.get("image_shape") else None,  # type: ignore[arg-type]
            levels=int(d["levels"]) if d.get("levels") else None,  # type: ignore[call-overload]
            value_max=float(d["value_max"]) if d.get("value_max") is not None else None,  # type: ignore[arg-type]
            kind=str(d.get("kind") or ""),
            extra=dict(d.get("extra") or {}),  # type: ignore[call-overload]
        )


def _implied_kind(image_shape: tuple[int, ...] | None) -> str:
    return IMAGE_SET if image_shape is not None else TENSOR_TABLE
