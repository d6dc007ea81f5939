"""Sweeps: ``POST /v1/sweeps`` makes child jobs of one base spec over a grid of values
(every combination, random draws, or Optuna's TPE told the finished children's metric);
``GET /v1/sweeps/{id}`` is the table of children, best first; ``plot.png`` their curves
overlaid; ``cancel`` stops the children and the sweep. The logic is in ``app/sweeps.py``;
the reconciler drives running sweeps forward as their children finish.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import trajectories
from app.api.common import PNG, PNGResponse
from app.api.deps import CurrentPrincipal, SessionDep
from app.auth import Principal
from app.db.models import Job, Metric, Sweep
from app.limits import INFERENCE_LIMITER, check_active_jobs
from app.paging import newest_first
from app.problems import Problem
from app.schemas import JobSpec
from app.sweeps import (
    MAX_PARALLEL,
    MAX_TRIALS,
    Child,
    advance,
    cancel_sweep,
    children,
    create_sweep,
    find_replay,
    ranked,
    request_digest,
)

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])

GridKey = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.]+$")]


class Range(BaseModel):
    """Numbers from ``low`` to ``high`` (random and tpe only); integers when both ends are,
    log-uniform with ``log``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    low: int | float
    high: int | float
    log: bool = False


class SweepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: JobSpec = Field(description="the base job spec every child starts from")  # type: ignore[valid-type]
    grid: Annotated[
        dict[GridKey, Annotated[list[Any], Field(min_length=1, max_length=MAX_TRIALS)] | Range],
        Field(
            min_length=1,
            max_length=16,
            description="dotted path into the spec (optimizer.lr, params.hidden, train.seed, "
            "dataset) -> a list of values, or for random and tpe a range",
        ),
    ]
    method: Literal["grid", "random", "tpe"] = "grid"
    trials: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_TRIALS,
            description="children in all: a grid's product by default (it may not exceed "
            f"{MAX_TRIALS}), 10 for random and tpe",
        ),
    ] = None
    parallel: Annotated[
        int, Field(ge=1, le=MAX_PARALLEL, description="children queued or running at once")
    ] = 4
    metric: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            pattern=r"^[A-Za-z0-9_.\-]+$",
            description="the children's final metric that ranks them (and TPE is told)",
        ),
    ] = "val_loss"
    goal: Literal["min", "max"] = "min"
    seed: Annotated[int, Field(ge=0, le=2**31 - 1, description="seeds random and tpe")] = 0
    name: Annotated[str | None, Field(max_length=200)] = None


class ChildOut(BaseModel):
    number: int = Field(description="the trial's number, in creation order")
    job_id: str | None
    values: dict[str, Any] = Field(description="the grid's keys and this child's values")
    status: str = Field(
        description="the job's status; deleted (the job was deleted) or refused (no job "
        "made: a random or tpe pick the service refused, see error)"
    )
    metric: float | None = Field(description="the final metric of a succeeded child")
    error: str | None


class SweepOut(BaseModel):
    id: str
    name: str | None
    status: Literal["running", "finished", "cancelled"]
    method: str
    metric: str
    goal: str
    trials: int
    parallel: int
    seed: int
    grid: dict[str, Any]
    spec: dict[str, Any] = Field(description="the base spec as submitted")
    counts: dict[str, int] = Field(description="children by status")
    best: ChildOut | None
    children: list[ChildOut] = Field(description="best first by goal, then the rest by number")
    created_at: datetime
    finished_at: datetime | None


class SweepList(BaseModel):
    items: list[SweepOut]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last"
    )


def _child(c: Child) -> ChildOut:
    return ChildOut(
        number=c.number,
        job_id=c.job_id,
        values=c.values,
        status=c.status,
        metric=c.metric,
        error=c.error,
    )


def sweep_out(session: Session, sweep: Sweep) -> SweepOut:
    rows = ranked(children(session, sweep), sweep.goal)
    counts: dict[str, int] = {}
    for c in rows:
        counts[c.status] = counts.get(c.status, 0) + 1
    best = rows[0] if rows and rows[0].metric is not None else None
    return SweepOut(
        id=sweep.id,
        name=sweep.name,
        status=sweep.status,
        method=sweep.method,
        metric=sweep.metric,
        goal=sweep.goal,
        trials=sweep.trials,
        parallel=sweep.parallel,
        seed=sweep.seed,
        grid=sweep.grid,
        spec=sweep.spec,
        counts=counts,
        best=_child(best) if best is not None else None,
        children=[_child(c) for c in rows],
        created_at=sweep.created_at,
        finished_at=sweep.finished_at,
    )


def owned_sweep(session: Session, principal: Principal, sweep_id: str) -> Sweep:
    """The sweep if it belongs to the caller; 404 otherwise (existence is not revealed)."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.owner != principal.owner:
        raise Problem(404, f"no sweep {sweep_id!r}")
    return sweep


IDEMPOTENCY_KEY = (
    "any string of yours (at most 200 characters, one per intended sweep): a repeat of "
    "this request with the same key and body answers the sweep the first one made (200, "
    "Idempotent-Replayed: true) and creates nothing; the same key with another body is a "
    "409 naming Idempotency-Key. Keys are per owner."
)


@router.post(
    "",
    status_code=201,
    response_model=SweepOut,
    response_description="created; its first parallel children queued",
    responses={
        200: {
            "model": SweepOut,
            "description": "replay of an earlier request with this Idempotency-Key",
        }
    },
)
def post_sweep(
    body: Annotated[SweepRequest, Body()],
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, description=IDEMPOTENCY_KEY)
    ] = None,
) -> SweepOut:
    """Check every child as ``POST /v1/jobs`` would (a 422 names ``grid.<key>`` or
    ``spec.<field>``), store the sweep and create its first ``parallel`` children; the
    reconciler creates the rest as children finish. Each child counts against the
    owner's active jobs limit. With an ``Idempotency-Key``, a repeat returns the same
    sweep, as ``POST /v1/jobs`` does a job."""
    digest = request_digest(body.model_dump(mode="json"))
    # a replay first: the owner's active jobs may be this very sweep's children
    sweep = find_replay(session, principal.owner, idempotency_key, digest)
    created = False
    if sweep is None:
        check_active_jobs(session, principal.owner)  # 429 now, rather than a sweep that waits
        session.rollback()  # the check's lock is not needed past it
        sweep, created = create_sweep(
            session,
            principal,
            spec=body.spec.model_dump(mode="json", exclude_unset=True),  # type: ignore[attr-defined]
            grid={k: v.model_dump() if isinstance(v, Range) else v for k, v in body.grid.items()},
            method=body.method,
            trials=body.trials,
            parallel=body.parallel,
            metric=body.metric,
            goal=body.goal,
            seed=body.seed,
            name=body.name,
            idempotency_key=idempotency_key,
            request_hash=digest,
        )
        if created:
            advance(sweep.id)
        session.expire_all()
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return sweep_out(session, owned_sweep(session, principal, sweep.id))


@router.get("", response_model=SweepList)
def list_sweeps(
    principal: CurrentPrincipal,
    session: SessionDep,
    status: Literal["running", "finished", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> SweepList:
    """The caller's sweeps, newest first, a page at a time (``next_cursor``)."""
    q = select(Sweep).where(Sweep.owner == principal.owner)
    if status:
        q = q.where(Sweep.status == status)
    rows, next_cursor = newest_first(session, q, Sweep.created_at, Sweep.id, limit, cursor)
    return SweepList(items=[sweep_out(session, s) for s in rows], next_cursor=next_cursor)


@router.get("/{sweep_id}", response_model=SweepOut)
def get_sweep(sweep_id: str, principal: CurrentPrincipal, session: SessionDep) -> SweepOut:
    return sweep_out(session, owned_sweep(session, principal, sweep_id))


@router.post("/{sweep_id}/cancel", response_model=SweepOut, status_code=202)
def post_cancel(sweep_id: str, principal: CurrentPrincipal, session: SessionDep) -> SweepOut:
    """No new children; queued children are cancelled at once, running ones asked to stop
    (within about a second, their checkpoints kept). 409 when the sweep is over."""
    sweep = owned_sweep(session, principal, sweep_id)
    cancel_sweep(session, sweep)
    session.commit()
    return sweep_out(session, sweep)


def legend_outcome(c: Child, metric: str) -> str:
    """How a child ended, after its values in a plot's legend: its final metric; for a child
    that succeeded without logging one (the optimizer lab's ``settled_step`` when the run
    ended above the tolerance) that it has none; else its status."""
    if c.metric is not None:
        return f" → {c.metric:.4g}"
    return f" (no {metric})" if c.status == "succeeded" else f" ({c.status})"


MAX_PLOT_POINTS = 20_000  # metric values one plot reads, over all its children


@router.get("/{sweep_id}/plot.png", response_class=PNGResponse, responses=PNG)
def get_plot(sweep_id: str, principal: CurrentPrincipal, session: SessionDep) -> PNGResponse:
    """The children's ``metric`` against the step, overlaid, best first in the legend; for
    the optimizer lab's children on one landscape, every path on its contour. Drawing takes
    the inference rate limit."""
    sweep = owned_sweep(session, principal, sweep_id)
    INFERENCE_LIMITER.take(principal.key_id)  # a figure costs CPU, as inference does
    rows = ranked(children(session, sweep), sweep.goal)
    paths = _paths_png(session, sweep, rows)
    if paths is not None:
        return PNGResponse(paths)
    from app.plots import sweep_curves_png

    ids = [c.job_id for c in rows if c.job_id is not None]
    points = session.execute(
        select(Metric.job_id, Metric.step, Metric.value)
        .where(Metric.job_id.in_(ids), Metric.name == sweep.metric)
        .order_by(Metric.job_id, Metric.step)
        .limit(MAX_PLOT_POINTS)
    ).all()
    series: dict[str, tuple[list[int], list[float | None]]] = {}
    for job_id, step, value in points:
        steps, values = series.setdefault(job_id, ([], []))
        steps.append(step)
        values.append(value)
    curves = []
    for c in rows:
        if c.job_id in series:
            shown = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in c.values.items())
            final = legend_outcome(c, sweep.metric)
            curves.append((f"#{c.number} {shown}{final}", *series[c.job_id]))
    title = f"sweep {sweep.name or sweep.id}: {sweep.metric} ({sweep.goal} is best)"
    return PNGResponse(sweep_curves_png(curves, metric=sweep.metric, title=title))


# params that move a path's start or its stopping rule but not the landscape under it
PATH_ONLY_PARAMS = frozenset({"start", "tolerance"})


def _paths_png(session: Session, sweep: Sweep, rows: list[Child]) -> bytes | None:
    """For a family that logs an optimizer's path (the TRAJECTORY capability: the optimizer
    lab), every child's path on one contour of the landscape, labelled as the curves are;
    None (the curves instead) for other families, or when the children's landscapes differ
    (another dataset or landscape parameter) or no child has a job yet."""
    from app.plots import trajectory_png

    if not trajectories.has_paths(str(sweep.spec.get("model"))):
        return None
    jobs = [(c, session.get(Job, c.job_id)) for c in rows if c.job_id is not None]
    shown = [(c, job) for c, job in jobs if job is not None]
    landscapes = {
        (job.dataset, json.dumps({k: v for k, v in job.spec["params"].items()
                                  if k not in PATH_ONLY_PARAMS}, sort_keys=True))
        for _, job in shown
    }  # fmt: skip
    if len(landscapes) != 1:
        return None
    per_path = max(2, MAX_PLOT_POINTS // len(shown))
    paths, minimum = [], None
    for c, job in shown:
        body = trajectories.read(session, job, per_path)
        minimum = body["minimum"]
        values = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in c.values.items())
        final = legend_outcome(c, sweep.metric)
        paths.append((f"#{c.number} {values}{final}", trajectories.as_array(body["path"])))
    xs, ys, loss, info = trajectories.landscape(shown[0][1], [p for _, p in paths])
    title = (
        f"sweep {sweep.name or sweep.id} on {shown[0][1].dataset}: every child's path "
        f"(legend best first by {sweep.metric}, {sweep.goal} is best)"
    )
    return trajectory_png(
        xs, ys, loss, paths,
        minima=[m[:2] for m in info.extra["minima"]], floor=minimum, title=title,
    )  # fmt: skip
