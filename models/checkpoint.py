"""Training state <-> safetensors bytes, with no pickle anywhere.

A state is a tree of dicts, lists and tuples whose leaves are tensors, numpy arrays
or JSON scalars (what ``module.state_dict()``, ``optimizer.state_dict()`` and RNG
states are made of). Tensors go into the safetensors payload under their path; the
tree itself, with tensors replaced by references, goes into the header's metadata as
JSON. Loading parses JSON and raw tensor bytes only: a hostile file can fail to load
but cannot run code.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "deepzoo-state-1"


def dump_state(state: dict[str, Any]) -> bytes:
    tensors: dict[str, torch.Tensor] = {}

    def enc(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().to("cpu").contiguous().clone()
            return {"__t__": path}
        if isinstance(node, np.ndarray):
            tensors[path] = torch.from_numpy(np.ascontiguousarray(node)).clone()
            return {"__t__": path, "np": True}
        if isinstance(node, dict):
            keys = list(node)
            return {"__d__": [[_key(k), enc(node[k], f"{path}/{k}")] for k in keys]}
        if isinstance(node, (list, tuple)):
            items = [enc(v, f"{path}/{i}") for i, v in enumerate(node)]
            return {"__l__" if isinstance(node, list) else "__tu__": items}
        if isinstance(node, (np.integer, np.floating, np.bool_)):
            return node.item()
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot checkpoint a {type(node).__name__} at {path or '/'}")

    tree = enc(state, "")
    return st_save(tensors, metadata={"format": FORMAT, "tree": json.dumps(tree)})


def _key(k: Any) -> list[Any]:
    if isinstance(k, bool) or not isinstance(k, (int, str)):
        raise TypeError(f"checkpoint dict keys must be str or int, got {type(k).__name__}")
    return ["i", k] if isinstance(k, int) else ["s", k]


def read_metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's ``__metadata__`` (JSON only)."""
    if len(data) < 8:
        raise ValueError("not a safetensors file: too short")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > 100_000_000:
        raise ValueError("not a safetensors file: bad header length")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("bad safetensors metadata")
    return meta


def load_state(data: bytes) -> dict[str, Any]:
    meta = read_metadata(data)
    if meta.get("format") != FORMAT:
        raise ValueError(f"unknown checkpoint format {meta.get('format')!r}")
    tensors = st_load(data)

    def dec(node: Any) -> Any:
        if isinstance(node, dict):
            if "__t__" in node:
                t = tensors[node["__t__"]]
                return t.numpy() if node.get("np") else t
            if "__d__" in node:
                return {(int(v) if kind == "i" else v): dec(x) for (kind, v), x in node["__d__"]}
            if "__l__" in node:
                return [dec(v) for v in node["__l__"]]
            if "__tu__" in node:
                return tuple(dec(v) for v in node["__tu__"])
            raise ValueError("bad checkpoint tree")
        return node

    state = dec(json.loads(meta["tree"]))
    if not isinstance(state, dict):
        raise ValueError("bad checkpoint tree")
    return state


def rng_state() -> dict[str, Any]:
    """Global RNG states (torch CPU, CUDA when present, numpy, Python's random)."""
    import random

    py = random.getstate()
    np_state: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1], int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    torch.set_rng_state(state["torch"])
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
