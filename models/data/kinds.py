"""Data kinds: what the service needs from any data a family trains on.

Families train on different things: tensor tables and image sets (``tables.py``),
sequences, graphs, environments that make their data by interaction, and loss
landscapes (a function to minimise). The runner, the limits and the catalog never ask
which: they use only this protocol.

- ``info``: the ``DataInfo`` the model is built from (``app.limits`` builds it on the
  meta device to count parameters; a job stores its JSON and inference reads it back);
  ``info.kind`` names the kind and ``info.task`` is one of the tasks that kind declared.
- ``fingerprint()``: a sha256 hex digest of the content, the job's provenance
  (``dataset_sha256``): stable across processes, changed by any change of the content.
- ``size()``: ``DataSize``, what limits can measure without knowing the kind.
- ``describe()``: JSON for the catalog (``describe_common`` gives the shared keys).

A new kind is one module here: a frozen dataclass holding its natural representation,
``declare_kind(name, tasks)``, and the four members above.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from models.data.info import DataInfo


@dataclass(frozen=True)
class DataSize:
    """How much data a kind holds: ``examples`` stored (rows, sequences, nodes; 0 for data
    made by interaction or by a formula) and ``values``, the numbers it holds in memory."""

    examples: int
    values: int

    def to_json(self) -> dict[str, int]:
        return {"examples": self.examples, "values": self.values}


@runtime_checkable
class DataKind(Protocol):
    """Any data a family trains on (see the module docstring)."""

    @property
    def info(self) -> DataInfo: ...

    @property
    def description(self) -> str: ...

    def fingerprint(self) -> str: ...

    def size(self) -> DataSize: ...

    def describe(self) -> dict[str, Any]: ...


def describe_common(
    data: DataKind, *, shape: list[int] | None, sizes: Mapping[str, int]
) -> dict[str, Any]:
    """The catalog keys every kind gives: ``name``, ``kind``, ``task``, ``shape`` (examples
    and the shape of one, or None), ``sizes`` (examples per split or part), ``size``,
    ``description`` and the ``info`` JSON a model is built from."""
    info = data.info
    return {
        "name": info.name,
        "kind": info.kind,
        "task": info.task,
        "shape": shape,
        "sizes": dict(sizes),
        "size": data.size().to_json(),
        "description": data.description,
        "info": info.to_json(),
    }


def digest(header: Mapping[str, Any], arrays: Iterable[np.ndarray] = ()) -> str:
    """sha256 of a JSON header (keys sorted) and arrays, each with its dtype and shape."""
    h = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"|{a.dtype.str}{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()
