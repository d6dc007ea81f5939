"""Sequences: token sequences over a vocabulary (text) or series of real vectors (time
series), each split a tuple of variable-length arrays.

``next_token``: each sequence is (T,) int64 token ids below ``len(vocab)``;
``forecast``: each is (T, F) float32, F values a step, the same F throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.data.info import DataInfo, declare_kind
from models.data.kinds import DataSize, describe_common, digest

SEQUENCES = declare_kind("sequences", frozenset({"next_token", "forecast"}))


@dataclass(frozen=True, eq=False)
class SequenceSet:
    name: str
    task: str  # "next_token" or "forecast"
    train: tuple[np.ndarray, ...]
    val: tuple[np.ndarray, ...] = ()
    test: tuple[np.ndarray, ...] = ()
    vocab: tuple[str, ...] = ()  # next_token: the text of each token id
    description: str = ""

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError(f"{self.name}: no training sequences")
        parts = self.train + self.val + self.test
        if self.task == "next_token":
            if not self.vocab:
                raise ValueError(f"{self.name}: next_token sequences need a vocab")
            for s in parts:
                if s.ndim != 1 or s.dtype.kind not in "iu" or len(s) == 0:
                    raise ValueError(f"{self.name}: a token sequence is (T,) integer ids")
                if s.min() < 0 or s.max() >= len(self.vocab):
                    raise ValueError(f"{self.name}: token ids outside 0..{len(self.vocab) - 1}")
        elif self.task == "forecast":
            width = {s.shape[1:] for s in parts}
            if self.vocab or any(s.ndim != 2 or len(s) == 0 for s in parts) or len(width) != 1:
                raise ValueError(f"{self.name}: a series is (T, F) with one F and no vocab")
        else:
            raise ValueError(f"{self.name}: task {self.task!r}; next_token or forecast")

    @property
    def step_shape(self) -> tuple[int, ...]:
        """One step's values: (1,) a token id, (F,) a forecast step."""
        return (1,) if self.task == "next_token" else tuple(self.train[0].shape[1:])

    @property
    def info(self) -> DataInfo:
        tokens = self.task == "next_token"
        return DataInfo(
            name=self.name,
            task=self.task,
            input_shape=self.step_shape,
            target_dim=1 if tokens else self.step_shape[0],
            n_classes=len(self.vocab) if tokens else None,
            n_train=len(self.train),
            kind=SEQUENCES,
            extra={"max_len": max(len(s) for s in self.train + self.val + self.test)},
        )

    def fingerprint(self) -> str:
        header = {
            "kind": SEQUENCES,
            "task": self.task,
            "vocab": list(self.vocab),
            "lengths": [[len(s) for s in part] for part in (self.train, self.val, self.test)],
        }
        return digest(header, self.train + self.val + self.test)

    def size(self) -> DataSize:
        parts = self.train + self.val + self.test
        return DataSize(examples=len(parts), values=sum(int(s.size) for s in parts))

    def describe(self) -> dict[str, Any]:
        sizes = {"train": len(self.train), "val": len(self.val), "test": len(self.test)}
        return describe_common(self, shape=[len(self.train), *self.step_shape], sizes=sizes)
