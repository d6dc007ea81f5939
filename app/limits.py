"""Limits that protect the service: active jobs per owner, model size, inference rate, and
the cost of one inference request (work and memory)."""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from app.config import get_settings
from app.db.models import Job
from app.problems import Problem
from models.data import DataInfo, load_data
from models.optim import MAX_NEWTON_PARAMETERS
from models.registry import REGISTRY, get_family

log = logging.getLogger("deepzoo.limits")


# inputs × stochastic passes (or importance samples) one inference request may compute
MAX_FORWARD_ROWS = 5_000_000


def check_active_jobs(session: Session, owner: str) -> None:
    """429 when the owner already has ``DEEPZOO_MAX_ACTIVE_JOBS`` queued or running.

    Atomic with the job it admits: the check takes a per-owner lock held until the
    caller's transaction ends (it commits the new job), so concurrent requests of one
    owner are counted one after another. PostgreSQL: a transaction-scoped advisory lock
    on the owner's name; SQLite: ``BEGIN IMMEDIATE`` (its one writer lock).
    """
    limit = get_settings().max_active_jobs
    _lock_owner(session, owner)
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


def lock_owner(session: Session, owner: str) -> None:
    """Hold the owner's admission lock until the session's transaction ends (what
    ``check_active_jobs`` takes): a sweep's driver and its cancel take it too, so a
    child is never created past a cancel nor twice for one trial number."""
    _lock_owner(session, owner)


def _lock_owner(session: Session, owner: str) -> None:
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
            {"name": f"deepzoo:active-jobs:{owner}"},
        )
    elif dialect == "sqlite":
        raw = connection.connection.driver_connection
        if raw is not None and not raw.in_transaction:  # else the write lock is held already
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def count_parameters(model: str, dataset: str | DataInfo, params: Any) -> int:
    """Parameters of the module this spec builds, counted on the meta device (no memory);
    ``dataset`` is a built-in's name or an upload's ``DataInfo``. Any data kind: the
    module is built from its ``DataInfo`` (``models.data.DataKind.info``)."""
    family = get_family(model)
    info = load_data(dataset).info if isinstance(dataset, str) else dataset
    with torch.device("meta"):
        module = family.build(params, info)
    return sum(p.numel() for p in module.parameters())


def check_model_size(model: str, dataset: str | DataInfo, params: Any) -> int:
    """422 on params when the spec's module cannot be built or is over the size limit;
    returns its parameter count."""
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
    return n


def check_optimizer(model: str, optimizer: Any, parameters: int) -> None:
    """``newton`` where it cannot run is a 422 on ``optimizer.name``, not a job that fails
    in its worker: a family whose loop gives the optimizer no closure to evaluate the loss
    again (``Family.second_order``), or a model whose exact Hessian, ``parameters``², is
    over ``MAX_NEWTON_PARAMETERS``² entries (the notes' "too big to compute", as a number)."""
    if optimizer.name != "newton":
        return
    family = get_family(model)
    if not family.second_order:
        able = sorted(name for name, f in REGISTRY.items() if f.second_order)
        message = (
            f"newton evaluates the loss again for its Hessian, and {model}'s training loop "
            f"does not; models that take newton: {', '.join(able)}"
        )
    elif parameters > MAX_NEWTON_PARAMETERS:
        entries, cap = parameters**2, MAX_NEWTON_PARAMETERS**2
        message = (
            f"newton's exact Hessian for {parameters:,} parameters is {parameters:,} x "
            f"{parameters:,} = {entries:,} entries ({entries * 8 / 2**20:,.0f} MiB in "
            f"float64, {parameters:,} backward passes a step); the cap is "
            f"{MAX_NEWTON_PARAMETERS:,} parameters ({cap:,} entries): choose another optimizer "
            "or a smaller model"
        )
    else:
        return
    raise Problem(
        422,
        f"optimizer.name: {message}",
        errors=[{"path": "optimizer.name", "message": message, "type": "value_error"}],
    )


def check_batch_size(model: str, params: Any, batch_size: int, info: DataInfo) -> None:
    """A minibatch smaller than the model can train on (BatchNorm statistics need two
    examples, a PacGAN discriminator a whole pack) is a 422 on ``train.batch_size``, not
    a job that fails on its first step; so is one larger than the family admits on this
    data (``Family.max_batch_size``: a recurrent step's work grows with the length)."""
    family = get_family(model)
    need = family.min_batch_size(params) if family.min_batch_size is not None else 1
    most = family.max_batch_size(params, info) if family.max_batch_size is not None else None
    if batch_size < need:
        message = (
            f"{model} with these params trains on minibatches of at least {need} examples "
            "(batch statistics need 2; a PacGAN discriminator a whole pack)"
        )
        kind = "greater_than_equal"
    elif most is not None and batch_size > most:
        message = (
            f"{model} with these params on {info.name} trains on minibatches of at most "
            f"{most} examples (the work of one step grows with the sequence's length)"
        )
        kind = "less_than_equal"
    else:
        return
    raise Problem(
        422,
        f"train.batch_size: {message}",
        errors=[{"path": "train.batch_size", "message": message, "type": kind}],
    )


def check_budget_unit(model: str, train: dict[str, Any]) -> None:
    """A family that counts steps (``Family.default_steps``: RL's environment steps, the
    optimizer lab's optimizer steps) has no epochs:
    ``train.epochs`` is a 422 naming it, not a job that fails in its worker."""
    family = get_family(model)
    if family.default_steps is not None and train.get("epochs") is not None:
        message = f"{model} counts steps: give train.steps, not train.epochs"
        raise Problem(
            422,
            f"train.epochs: {message}",
            errors=[{"path": "train.epochs", "message": message, "type": "value_error"}],
        )


# One token bucket per key in Redis, so every API replica draws on the same bucket.
# KEYS[1] = bucket; ARGV = rate, burst, now (s); returns {allowed, tokens left}.
_BUCKET_LUA = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


class RateLimiter:
    """A token bucket per API key: ``rate`` requests a second, bursts of ``burst``.

    The buckets live in Redis (the broker), shared by every API process behind a load
    balancer; one short Lua script per request takes a token atomically. Should Redis be
    unreachable, each process falls back to a bucket of its own for a few seconds rather
    than refusing inference or letting it run unlimited.
    """

    RETRY_REDIS_SECONDS = 5.0

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()
        self._redis: Any = None
        self._script: Any = None
        self._redis_url: str | None = None
        self._redis_down_until = 0.0

    def take(self, key: str) -> None:
        settings = get_settings()
        rate, burst = settings.inference_rate, settings.inference_burst
        tokens = self._take_shared(key, rate, burst, settings.resolved_broker_url)
        if tokens is None:
            tokens = self._take_local(key, rate, burst)
        if tokens < 0:
            wait = math.ceil(-tokens / rate)  # until the missing part of a token refills
            raise Problem(
                429,
                f"inference rate limit: {rate:g} requests a second per key",
                headers={"Retry-After": str(max(1, wait))},
            )

    # The two take the token when there is one and return the tokens left; without one
    # they return -(the fraction of a token missing) - that is, a negative number.
    def _take_shared(self, key: str, rate: float, burst: int, url: str) -> float | None:
        if time.monotonic() < self._redis_down_until or not url.startswith(("redis", "rediss")):
            return None
        try:
            if self._redis is None or self._redis_url != url:
                import redis

                self._redis = redis.Redis.from_url(
                    url, socket_timeout=0.5, socket_connect_timeout=0.5
                )
                self._script = self._redis.register_script(_BUCKET_LUA)
                self._redis_url = url
            allowed, left = self._script(
                keys=[f"deepzoo:rate:{key}"], args=[rate, burst, time.time()]
            )
        except Exception as exc:  # redis.RedisError, or a broker that is not Redis
            self._redis_down_until = time.monotonic() + self.RETRY_REDIS_SECONDS
            log.warning("rate limiter: Redis unavailable (%s); per-process buckets for now", exc)
            return None
        return float(left) if int(allowed) else float(left) - 1.0

    def _take_local(self, key: str, rate: float, burst: int) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return tokens - 1.0
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            return tokens - 1.0


INFERENCE_LIMITER = RateLimiter()


# --- inference cost: work (parameters × forward rows) and memory (chunked to a budget) -------

# parameters × forward rows one inference request may compute (≈ multiply-adds of a dense
# network): about 9 s of one CPU core here (25M parameters × 1,000 rows took 2.3 s)
MAX_INFERENCE_WORK = 100_000_000_000
# samples one PNG grid draws (a 16 × 16 grid); JSON and 2-D scatters take DEEPZOO_MAX_SAMPLES
MAX_PNG_SAMPLES = 256


def too_costly(fields: Sequence[str], message: str) -> Problem:
    """422 naming the request fields that set the cost, the one to change first."""
    return Problem(
        422,
        f"{fields[0]}: {message}",
        errors=[{"path": f, "message": message, "type": "too_costly"} for f in fields],
    )


def check_work(parameters: int, rows: int, fields: Sequence[str], what: str) -> None:
    """422 when ``parameters × rows`` is over ``MAX_INFERENCE_WORK``, or ``rows`` over
    ``MAX_FORWARD_ROWS``; ``what`` says what the rows are (e.g. "inputs × mc_samples")."""
    work = parameters * rows
    if work > MAX_INFERENCE_WORK or rows > MAX_FORWARD_ROWS:
        raise too_costly(
            fields,
            f"{what} = {rows:,} forward rows through {parameters:,} parameters "
            f"({work:.2g} multiply-adds); one request may compute at most "
            f"{MAX_INFERENCE_WORK:.2g} multiply-adds and {MAX_FORWARD_ROWS:,} rows: ask for fewer",
        )


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of the tensors the ops under it allocate that are still alive, and
    their peak: a measure of what a call allocates that holds on any device and thread
    (dispatch modes are thread-local), unlike RSS."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: dict[int, int] = {}
        self.refs: dict[int, int] = {}
        self.now = self.peak = 0

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.now -= self.sizes.pop(key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0:
                continue
            if key not in self.sizes:
                self.sizes[key], self.refs[key] = storage.nbytes(), 0
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
            self.refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def peak_bytes(fn: Callable[[], Any]) -> int:
    """The most bytes of tensors ``fn`` holds at once (its result's included)."""
    with torch.inference_mode(), _LiveBytes() as live:
        result = fn()
        peak = live.peak
    del result
    return peak


@dataclass(frozen=True)
class RowCost:
    """Memory of a batched call as ``fixed + per_row × rows`` bytes, measured on 1 and 2 rows."""

    fixed: int
    per_row: int

    @classmethod
    def measure(cls, call: Callable[[int], Any]) -> RowCost:
        one, two = peak_bytes(lambda: call(1)), peak_bytes(lambda: call(2))
        per_row = max(two - one, 1)
        return cls(max(one - per_row, 0), per_row)


def memory_budget() -> int:
    return get_settings().inference_memory_mb * 2**20


def chunk_size(cost: RowCost, rows_per_unit: int, fields: Sequence[str], what: str) -> int:
    """How many units (inputs, grid points, ...) of ``rows_per_unit`` rows each one call may
    take to stay under ``DEEPZOO_INFERENCE_MEMORY_MB``; 422 when not even one fits."""
    budget = memory_budget()
    unit = cost.per_row * rows_per_unit
    fits = (budget - cost.fixed) // unit if unit > 0 else 1 << 40
    if fits < 1:
        need = (cost.fixed + unit) / 2**20
        raise too_costly(
            fields,
            f"one input's {what} would allocate {need:,.0f} MB; the inference memory budget "
            f"is {budget / 2**20:,.0f} MB (DEEPZOO_INFERENCE_MEMORY_MB): ask for fewer",
        )
    return int(fits)
