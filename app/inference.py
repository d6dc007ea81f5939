"""Trained models in the API process: an LRU cache of loaded checkpoints.

Once warm, a request reads no database: the entry holds the job's owner, family,
data shape, hyperparameters and the module. Entries are keyed by (job, checkpoint), so a resumed
job that produces a new checkpoint is loaded afresh.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db.models import Checkpoint, Job
from app.db.ops import checkpoint_ok
from app.problems import Problem
from models.checkpoint import load_state
from models.data import DataInfo
from models.family import Family, Params
from models.registry import get_family


@dataclass
class Loaded:
    job_id: str
    owner: str
    checkpoint_id: str
    family: Family
    info: DataInfo
    module: torch.nn.Module
    params: Params  # the job's hyperparameters, which built the module
    checked_at: float = 0.0
    parameters: int = 0  # of the module: a request's work is parameters × forward rows
    # memory per forward row of each inference call, measured once (app.limits.RowCost)
    costs: dict[str, Any] = field(default_factory=dict)


class ModelCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Loaded] = OrderedDict()  # job id -> loaded model
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Loaded | None:
        with self._lock:
            item = self._items.get(job_id)
            if item is not None:
                self._items.move_to_end(job_id)
            return item

    def put(self, item: Loaded) -> None:
        with self._lock:
            self._items[item.job_id] = item
            self._items.move_to_end(item.job_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def evict(self, job_id: str) -> None:
        with self._lock:
            self._items.pop(job_id, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def load_model(session: Session, job: Job, checkpoint_id: str | None = None) -> Loaded:
    cid = checkpoint_id or job.checkpoint_id
    if cid is None or job.data_info is None:
        raise Problem(409, f"job {job.id} has no checkpoint yet (status {job.status})")
    ckpt = session.get(Checkpoint, cid)
    if ckpt is None or ckpt.job_id != job.id:
        raise Problem(404, f"no checkpoint {cid!r} in job {job.id}")
    if not checkpoint_ok(ckpt):
        raise Problem(409, f"checkpoint {cid} is corrupt (sha256 mismatch); resume or retrain")
    family = get_family(job.model)
    info = DataInfo.from_json(job.data_info)
    params = family.params(**job.spec["params"])
    module = family.build(params, info)
    module.load_state_dict(load_state(ckpt.data)["model"])
    module.eval()
    parameters = sum(p.numel() for p in module.parameters())
    return Loaded(job.id, job.owner, cid, family, info, module, params, parameters=parameters)


_CACHE: ModelCache | None = None


def cache() -> ModelCache:
    """The process's cache, sized by ``DEEPZOO_INFERENCE_CACHE_SIZE`` whoever calls first
    (a resume or a delete evicts through it before any inference does)."""
    global _CACHE
    if _CACHE is None:
        _CACHE = ModelCache(get_settings().inference_cache_size)
    return _CACHE


def to_jsonable(x: Any) -> Any:
    """Tensors to nested lists; NaN and inf (extreme inputs can overflow) become null."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            return _finite_or_none(x.tolist())
        return x.tolist()
    if isinstance(x, dict):
        return {k: to_jsonable(v) for k, v in x.items()}
    return x


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, list):
        return [_finite_or_none(v) for v in x]
    return x if math.isfinite(x) else None
