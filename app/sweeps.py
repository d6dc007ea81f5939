"""Hyperparameter sweeps: a base job spec, values for some of its fields, and children.

A sweep's ``grid`` maps dotted paths into the job spec (``optimizer.lr``,
``params.hidden``, ``train.batch_size``, ``dataset``) to a list of values, or, for
``random`` and ``tpe``, to a range ``{"low", "high", "log"}`` (integers when both ends
are). ``grid`` runs every combination in order; ``random`` draws each trial's values
from the sweep's seed and the trial's number; ``tpe`` asks Optuna's TPE sampler, told
the finished children's metric.

Nothing of a sweep lives only in memory. ``advance`` creates the next children while the
sweep has fewer than ``parallel`` of them queued or running: the API does it once when
the sweep is created, and the reconciler on each pass (``advance_all``), in whichever
API process gets the owner's admission lock (``app.limits.lock_owner``). For TPE a fresh
in-memory study is rebuilt from the children on each ask (their values and states, the
finished ones' metric), seeded from the sweep's seed and the number of trials so far: an
API restart loses nothing, and the same history asks the same values.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.admission import (
    SPEC_ADAPTER,
    cancel,
    check_spec,
    create_job,
    idempotency_conflict,
    spec_digest,
)
from app.auth import Principal
from app.db.models import Job, Sweep, SweepTrial, new_id, utcnow
from app.db.session import session_scope
from app.limits import check_active_jobs, lock_owner
from app.problems import Problem, field_path, field_problem, refusals_as_problems
from app.schemas import TERMINAL
from app.storage import check_quota
from app.workers_live import check_served

log = logging.getLogger("deepzoo.sweeps")

MAX_TRIALS = 64  # children of one sweep; a grid's product too
MAX_PARALLEL = 16  # children of one sweep queued or running at once
MAX_ACTIVE_SWEEPS = 10  # running sweeps per owner (each reconciler pass visits them all)
MAX_VALIDATED = 256  # combinations validated one by one before a random or tpe sweep starts
TOP_LEVEL = ("dataset", "params", "optimizer", "train")  # where a grid key may point
METHODS = ("grid", "random", "tpe")


# --- the grid: keys, values, ranges ------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One varied field: a list of values (categorical), or a range of numbers."""

    key: str
    values: tuple[Any, ...] | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def index(self, value: Any) -> int:
        """The position of ``value`` among the axis's values (as JSON compares them)."""
        assert self.values is not None
        want = json.dumps(value, sort_keys=True)
        for i, v in enumerate(self.values):
            if json.dumps(v, sort_keys=True) == want:
                return i
        raise ValueError(f"{value!r} is not among {self.key}'s values")


def parse_grid(grid: dict[str, Any], method: str) -> list[Axis]:
    """The grid's axes, or a 422 naming ``grid.<key>``."""
    if not grid:
        raise field_problem("grid", "give at least one field to vary")
    axes = []
    for key, spec in grid.items():
        path = f"grid.{key}"
        parts = key.split(".")
        if parts[0] not in TOP_LEVEL or any(not p for p in parts):
            raise field_problem(
                path, f"a dotted path into the job spec under one of {', '.join(TOP_LEVEL)}"
            )
        if parts[0] == "dataset" and len(parts) > 1:
            raise field_problem(path, "dataset is a name, not an object")
        if isinstance(spec, list):
            if not spec:
                raise field_problem(path, "give at least one value")
            axes.append(Axis(key, values=tuple(spec)))
            continue
        # a range: {"low", "high", "log"} (the request model checked the types)
        if method == "grid":
            raise field_problem(path, "a grid sweep takes a list of values, not a range")
        low, high, log_scale = spec["low"], spec["high"], bool(spec.get("log", False))
        if not low < high:
            raise field_problem(path, f"low ({low}) must be below high ({high})")
        if log_scale and low <= 0:
            raise field_problem(path, "a log range needs low > 0")
        axes.append(Axis(key, low=low, high=high, log=log_scale))
    return axes


def grid_size(axes: list[Axis]) -> int | None:
    """How many combinations the lists make; None with a range among the axes."""
    if any(a.values is None for a in axes):
        return None
    return math.prod(len(a.values or ()) for a in axes)


def combinations(axes: list[Axis]) -> Iterator[dict[str, Any]]:
    """Every combination of the lists, the last key varying fastest."""
    for combo in itertools.product(*(a.values or () for a in axes)):
        yield {a.key: v for a, v in zip(axes, combo, strict=True)}


def set_path(spec: dict[str, Any], key: str, value: Any) -> None:
    node = spec
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = json.loads(json.dumps(value))


def child_spec(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    spec = json.loads(json.dumps(base))
    for key, value in values.items():
        set_path(spec, key, value)
    return spec


# --- validation before anything is created ---------------------------------------------------


def _errors_of(exc: Problem) -> list[dict[str, Any]]:
    errors = exc.extra.get("errors")
    return list(errors) if isinstance(errors, list) else [{"path": "", "message": exc.detail}]


def _blame(path: str, values: dict[str, Any]) -> str | None:
    """The grid key a child's error at ``path`` comes from, if one does."""
    for key in values:
        if path == key or path.startswith((f"{key}.", f"{key}[")) or key.startswith(f"{path}."):
            return key
    return None


def check_child(
    session: Session, owner: str, base: dict[str, Any], values: dict[str, Any]
) -> dict[str, Any]:
    """The child's stored spec, or a 422 naming ``grid.<key>`` (the varied field at fault,
    with its value) or ``spec.<field>`` (the base spec's own)."""
    spec = child_spec(base, values)
    try:
        parsed = SPEC_ADAPTER.validate_python(spec)
        data, _ = check_spec(session, owner, parsed)
        with refusals_as_problems():
            check_served(data["train"]["device"])  # as POST /v1/jobs: a queue someone serves
        return data
    except ValidationError as exc:
        errors = [
            {
                "path": field_path(e.get("loc", ())),
                "message": e.get("msg", "invalid"),
                "type": e.get("type", "value_error"),
            }
            for e in exc.errors()
        ]
    except Problem as exc:
        if exc.status != 422:
            raise
        errors = [
            {
                "path": e.get("path", ""),
                "message": e.get("message", ""),
                "type": e.get("type", "value_error"),
            }
            for e in _errors_of(exc)
        ]
    out = []
    for e in errors:
        key = _blame(e["path"], values)
        if key is not None:
            shown = json.dumps(values[key])
            out.append(
                {
                    "path": f"grid.{key}",
                    "message": f"{shown}: {e['path']}: {e['message']}",
                    "type": e["type"],
                }
            )
        else:
            out.append({"path": f"spec.{e['path']}", "message": e["message"], "type": e["type"]})
    detail = "; ".join(f"{e['path']}: {e['message']}" for e in out)
    raise Problem(422, f"a child of this sweep would be refused: {detail}", errors=out)


def check_sweep(session: Session, owner: str, base: dict[str, Any], axes: list[Axis]) -> None:
    """Every child a grid makes, or for random and tpe each value on its own (and every
    combination when there are at most ``MAX_VALIDATED``), checked as ``POST /v1/jobs``
    would; a range is checked at both ends. (The base spec alone is not checked: a grid
    may replace the very field that would refuse it.)"""
    size = grid_size(axes)
    if size is not None and size <= MAX_VALIDATED:
        for values in combinations(axes):
            check_child(session, owner, base, values)
        return
    for axis in axes:
        for value in axis.values if axis.values is not None else (axis.low, axis.high):
            check_child(session, owner, base, {axis.key: value})


# --- picking a trial's values ------------------------------------------------------------------


def random_values(axes: list[Axis], seed: int, number: int) -> dict[str, Any]:
    """Trial ``number``'s values, drawn from the sweep's seed and the number alone."""
    rng = random.Random(f"deepzoo-sweep:{seed}:{number}")
    out: dict[str, Any] = {}
    for a in axes:
        if a.values is not None:
            out[a.key] = a.values[rng.randrange(len(a.values))]
        elif a.is_int:
            lo, hi = int(a.low or 0), int(a.high or 0)
            if a.log:
                out[a.key] = min(
                    hi, max(lo, round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
                )
            else:
                out[a.key] = rng.randint(lo, hi)
        else:
            lo_f, hi_f = float(a.low or 0.0), float(a.high or 0.0)
            if a.log:
                out[a.key] = math.exp(rng.uniform(math.log(lo_f), math.log(hi_f)))
            else:
                out[a.key] = rng.uniform(lo_f, hi_f)
    return out


@dataclass
class Child:
    """A trial with its job's state: what the table shows and TPE is told."""

    number: int
    values: dict[str, Any]
    job_id: str | None
    status: str  # the job's, or "deleted" (job gone), or "refused" (no job made)
    metric: float | None  # the final metric of a succeeded child
    error: str | None


def children(session: Session, sweep: Sweep) -> list[Child]:
    rows = session.execute(
        select(SweepTrial, Job.status, Job.metrics, Job.error)
        .outerjoin(Job, Job.id == SweepTrial.job_id)
        .where(SweepTrial.sweep_id == sweep.id)
        .order_by(SweepTrial.number)
    ).all()
    out = []
    for trial, status, metrics, job_error in rows:
        if trial.job_id is None:
            status, job_error = "refused", trial.error
        elif status is None:
            status = "deleted"
        value = (metrics or {}).get(sweep.metric) if status == "succeeded" else None
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
            value = None
        out.append(Child(trial.number, trial.values, trial.job_id, status, value, job_error))
    return out


def tpe_values(sweep: Sweep, axes: list[Axis], done: list[Child]) -> dict[str, Any]:
    """Ask a TPE sampler for the next values, after telling it every child so far: a
    succeeded child's metric (COMPLETE), a queued or running one (RUNNING: the constant
    liar keeps parallel asks apart), any other (FAIL). Categorical axes are asked as the
    index of their value, so values may be lists or objects."""
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, BaseDistribution] = {}
    for a in axes:
        if a.values is not None:
            dists[a.key] = CategoricalDistribution(tuple(range(len(a.values))))
        elif a.is_int:
            dists[a.key] = IntDistribution(int(a.low or 0), int(a.high or 0), log=a.log)
        else:
            dists[a.key] = FloatDistribution(float(a.low or 0.0), float(a.high or 0.0), log=a.log)
    startup = max(2, min(10, sweep.trials // 3))
    sampler = optuna.samplers.TPESampler(
        seed=(sweep.seed * 1_000_003 + len(done)) % 2**32,
        n_startup_trials=startup,
        constant_liar=True,
    )
    study = optuna.create_study(
        direction="minimize" if sweep.goal == "min" else "maximize", sampler=sampler
    )
    for c in done:
        try:
            params = {
                a.key: a.index(c.values[a.key]) if a.values is not None else c.values[a.key]
                for a in axes
            }
        except (KeyError, ValueError):
            continue
        if c.status == "succeeded" and c.metric is not None:
            state, value = TrialState.COMPLETE, c.metric
        elif c.status in ("queued", "running"):
            state, value = TrialState.RUNNING, None
        else:
            state, value = TrialState.FAIL, None
        study.add_trial(create_trial(state=state, value=value, params=params, distributions=dists))
    trial = study.ask(dists)
    return {
        a.key: a.values[trial.params[a.key]] if a.values is not None else trial.params[a.key]
        for a in axes
    }


def next_values(sweep: Sweep, axes: list[Axis], done: list[Child]) -> dict[str, Any] | None:
    """The values of trial number ``len(done)``; None once a grid is exhausted."""
    number = len(done)
    if sweep.method == "grid":
        return next(itertools.islice(combinations(axes), number, None), None)
    if sweep.method == "random":
        return random_values(axes, sweep.seed, number)
    return tpe_values(sweep, axes, done)


# --- creating, driving, cancelling ---------------------------------------------------------


def request_digest(request: dict[str, Any]) -> str:
    """The sha256 of a sweep request (every default filled in) that an ``Idempotency-Key``
    replay must match. The grid goes in as a list of (key, value) pairs: its keys' order
    is the order of the children, so a grid with the keys swapped is another request."""
    data = dict(request)
    data["grid"] = [[k, v] for k, v in request["grid"].items()]
    return spec_digest(data)


def find_replay(
    session: Session, owner: str, idempotency_key: str | None, request_hash: str
) -> Sweep | None:
    """The sweep an earlier request of this owner with this ``Idempotency-Key`` made, or
    None when the key is new (or not given); 409 naming ``Idempotency-Key`` when that
    request had another body."""
    if idempotency_key is None:
        return None
    existing = session.scalar(
        select(Sweep).where(Sweep.owner == owner, Sweep.idempotency_key == idempotency_key)
    )
    if existing is not None and existing.request_hash != request_hash:
        raise idempotency_conflict("sweep request")
    return existing


def create_sweep(
    session: Session,
    principal: Principal,
    *,
    spec: dict[str, Any],
    grid: dict[str, Any],
    method: str,
    trials: int | None,
    parallel: int,
    metric: str,
    goal: str,
    seed: int,
    name: str | None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> tuple[Sweep, bool]:
    """Check everything, then store the sweep (its children come from ``advance``); the
    sweep and True, or with an ``idempotency_key`` that a concurrent request of the same
    owner stored first, that request's sweep and False (or its 409)."""
    axes = parse_grid(grid, method)
    size = grid_size(axes)
    if method == "grid":
        assert size is not None
        if size > MAX_TRIALS:
            raise field_problem(
                "grid", f"the grid makes {size:,} children; a sweep may have {MAX_TRIALS}"
            )
        if trials is not None and trials > size:
            raise field_problem("trials", f"the grid makes only {size} children")
        trials = trials or size
    trials = trials or min(10, MAX_TRIALS)
    with refusals_as_problems():
        check_quota(session, principal.owner)  # 422 naming storage, as POST /v1/jobs
    check_sweep(session, principal.owner, spec, axes)
    lock_owner(session, principal.owner)
    # under the owner's lock: a concurrent request with this key has committed, or waits
    existing = find_replay(session, principal.owner, idempotency_key, request_hash or "")
    if existing is not None:
        return existing, False
    running = session.scalar(
        select(func.count()).where(Sweep.owner == principal.owner, Sweep.status == "running")
    )
    if (running or 0) >= MAX_ACTIVE_SWEEPS:
        raise Problem(
            429,
            f"at most {MAX_ACTIVE_SWEEPS} running sweeps per owner; wait for one to finish "
            "or cancel one",
            headers={"Retry-After": "30"},
        )
    sweep = Sweep(
        id=new_id("swp"),
        owner=principal.owner,
        name=name,
        spec=spec,
        grid=grid,
        method=method,
        trials=trials,
        parallel=min(parallel, trials),
        metric=metric,
        goal=goal,
        seed=seed,
        status="running",
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    session.add(sweep)
    try:
        session.commit()
    except IntegrityError:  # (owner, idempotency_key) is unique: a request the lock missed
        session.rollback()
        existing = find_replay(session, principal.owner, idempotency_key, request_hash or "")
        if existing is None:
            raise
        return existing, False
    return sweep, True


def advance(sweep_id: str) -> int:
    """Create this sweep's next children while it has room (fewer than ``parallel``
    queued or running, fewer than ``trials`` in all) and the owner is under the active
    jobs limit; mark it finished once every child is. One child per transaction, each
    under the owner's admission lock. Returns how many children it created."""
    created = 0
    while True:
        with session_scope() as s:
            owner = s.scalar(select(Sweep.owner).where(Sweep.id == sweep_id))
        if owner is None:
            return created
        with session_scope() as s:
            lock_owner(s, owner)
            sweep = s.get(Sweep, sweep_id)
            if sweep is None or sweep.status != "running":
                return created
            done = children(s, sweep)
            active = sum(c.status in ("queued", "running") for c in done)
            if len(done) >= sweep.trials:
                if active == 0:
                    sweep.status, sweep.finished_at = "finished", utcnow()
                return created
            if active >= sweep.parallel:
                return created
            try:
                check_active_jobs(s, owner)  # before asking TPE: a full owner waits a pass
            except Problem:
                return created
            values = next_values(sweep, parse_grid(sweep.grid, sweep.method), done)
            if values is None:  # a grid has no more combinations (trials caps it before)
                sweep.trials = len(done)
                continue
            if not _create_child(s, sweep, len(done), values):
                return created
            created += 1


def _create_child(s: Session, sweep: Sweep, number: int, values: dict[str, Any]) -> bool:
    """One child job and its trial row, committed together; False when the owner is at the
    active jobs limit (the next pass tries again). A child the service refuses (a random
    or TPE pick that no check before the sweep saw) is a trial with its reason."""
    principal = Principal(key_id="sweep", owner=sweep.owner, is_admin=False)
    spec = child_spec(sweep.spec, values)
    spec["name"] = f"{sweep.name or sweep.id} #{number}"

    def link(job: Job) -> None:
        job.provenance = {**(job.provenance or {}), "sweep": sweep.id, "trial": number}
        s.add(SweepTrial(sweep_id=sweep.id, number=number, values=values, job_id=job.id))

    try:
        parsed = SPEC_ADAPTER.validate_python(spec)
        create_job(s, principal, parsed, link=link)
    except Problem as exc:
        if exc.status == 429 or _passing(exc):
            return False
        if exc.status != 422:
            raise
        s.rollback()
        lock_owner(s, sweep.owner)
        s.add(SweepTrial(sweep_id=sweep.id, number=number, values=values, error=exc.detail))
    except ValidationError as exc:
        message = "; ".join(str(e.get("msg", "")) for e in exc.errors())
        s.add(SweepTrial(sweep_id=sweep.id, number=number, values=values, error=message))
    return True


def _passing(exc: Problem) -> bool:
    """A refusal that may pass by itself: the owner's storage quota (checkpoints get
    deleted), no live worker for the child's queue (one restarts). The trial waits for a
    later pass instead of being spent."""
    return exc.status == 422 and any(
        e.get("path") in ("storage", "train.device") for e in _errors_of(exc)
    )


def advance_all() -> int:
    """The reconciler's pass: advance every running sweep; the children created."""
    with session_scope() as s:
        ids = list(s.scalars(select(Sweep.id).where(Sweep.status == "running")))
    created = 0
    for sweep_id in ids:
        try:
            created += advance(sweep_id)
        except Exception:  # one broken sweep must not stop the others nor the reconciler
            log.exception("sweep %s: advancing failed", sweep_id)
    return created


def cancel_sweep(session: Session, sweep: Sweep) -> int:
    """Stop making children and cancel the queued and running ones (the caller commits);
    how many were asked to stop."""
    lock_owner(session, sweep.owner)
    session.refresh(sweep)
    if sweep.status != "running":
        raise Problem(409, f"sweep is already {sweep.status}")
    sweep.status, sweep.finished_at = "cancelled", utcnow()
    ids = session.scalars(
        select(SweepTrial.job_id).where(
            SweepTrial.sweep_id == sweep.id, SweepTrial.job_id.is_not(None)
        )
    ).all()
    stopped = 0
    for job in session.scalars(select(Job).where(Job.id.in_(ids), Job.status.not_in(TERMINAL))):
        cancel(session, job)
        stopped += 1
    return stopped


def ranked(children: list[Child], goal: str) -> list[Child]:
    """Best first: the succeeded children with a metric by ``goal``, then the rest by
    number."""
    scored = [c for c in children if c.metric is not None]
    scored.sort(key=lambda c: (c.metric if goal == "min" else -(c.metric or 0.0), c.number))
    rest = [c for c in children if c.metric is None]
    return scored + rest
