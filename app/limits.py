"""Limits that protect the service: active jobs per owner, model size, inference rate."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import torch
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db.models import Job
from app.problems import Problem
from models.data import DataInfo, load
from models.registry import get_family


def check_active_jobs(session: Session, owner: str) -> None:
    """429 when the owner already has ``DEEPZOO_MAX_ACTIVE_JOBS`` queued or running."""
    limit = get_settings().max_active_jobs
    active = session.scalar(
        select(func.count()).where(Job.owner == owner, Job.status.in_(("queued", "running")))
    )
    if (active or 0) >= limit:
        raise Problem(
            429,
            f"at most {limit} queued or running jobs per owner; wait for one to finish or "
            "cancel one",
            headers={"Retry-After": "30"},
        )


def count_parameters(model: str, dataset: str | DataInfo, params: Any) -> int:
    """Parameters of the module this spec builds, counted on the meta device (no memory);
    ``dataset`` is a built-in's name or an upload's ``DataInfo``."""
    family = get_family(model)
    info = load(dataset).info if isinstance(dataset, str) else dataset
    with torch.device("meta"):
        module = family.build(params, info)
    return sum(p.numel() for p in module.parameters())


def check_model_size(model: str, dataset: str | DataInfo, params: Any) -> None:
    limit = get_settings().max_model_parameters
    try:
        n = count_parameters(model, dataset, params)
    except ValueError as exc:  # params that this dataset cannot take (a family's build says)
        raise Problem(
            422,
            f"params: {exc}",
            errors=[{"path": "params", "message": str(exc), "type": "value_error"}],
        ) from None
    if n > limit:
        raise Problem(
            422,
            f"params: the model would have {n:,} parameters; the limit is {limit:,}",
            errors=[
                {"path": "params", "message": f"{n:,} parameters > {limit:,}", "type": "too_large"}
            ],
        )


class RateLimiter:
    """A token bucket per API key: ``rate`` requests a second, bursts of ``burst``."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        settings = get_settings()
        rate, burst = settings.inference_rate, settings.inference_burst
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / rate)
                raise Problem(
                    429,
                    f"inference rate limit: {rate:g} requests a second per key",
                    headers={"Retry-After": str(max(1, wait))},
                )
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:
                self._buckets.clear()


INFERENCE_LIMITER = RateLimiter()
