"""Jobs: create (idempotent), list, get, cancel, resume, clone, delete, metrics, events,
checkpoints."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError
from sqlalchemy import delete, select
from starlette.concurrency import run_in_threadpool

from app.admission import SPEC_ADAPTER, cancel, create_job, enqueue
from app.api.deps import CurrentPrincipal, SessionDep, bearer, current_principal, owned_job
from app.auth import Principal
from app.db.models import Checkpoint, Job, JobEvent, Metric
from app.db.ops import add_event, checkpoint_ok
from app.db.session import get_sessionmaker
from app.events import GONE, STREAM_SLOTS, JobState, Slot, event_watch
from app.inference import cache as model_cache
from app.limits import check_active_jobs
from app.paging import newest_first
from app.problems import Problem, refusals_as_problems
from app.schemas import (
    BINARY,
    TERMINAL,
    CheckpointOut,
    CloneRequest,
    JobList,
    JobOut,
    JobSpec,
    JobStatus,
    MetricsOut,
    Progress,
    ResumeRequest,
)
from app.storage import check_quota
from app.workers_live import check_served

__all__ = ["SPEC_ADAPTER", "create_job", "router"]  # tests import the two from here too

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
INT64_MAX = 2**63 - 1  # query values past it are a 422, not a database error
INT32_MAX = 2**31 - 1  # metric steps and event seqs are 32-bit columns


def job_out(job: Job) -> JobOut:
    total = job.progress_total or 0
    return JobOut(
        id=job.id,
        name=job.name,
        model=job.model,
        dataset=job.dataset,
        spec=job.spec,
        tags=job.tags or {},
        status=job.status,
        progress=Progress(
            step=job.progress_step,
            total=total,
            fraction=min(1.0, job.progress_step / total) if total else 0.0,
            eta_seconds=job.eta_seconds,
        ),
        metrics={
            k: (v if v is None or math.isfinite(v) else None)
            for k, v in (job.metrics or {}).items()
        },
        attempts=job.attempts,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        checkpoint=job.checkpoint_id,
        provenance=job.provenance or {},
    )


IDEMPOTENCY_KEY = (
    "any string of yours (at most 200 characters, one per intended job): a repeat of this "
    "request with the same key and spec answers the job the first one made (200, "
    "Idempotent-Replayed: true) and queues nothing; the same key with another spec is a "
    "409 naming Idempotency-Key. Keys are per owner."
)


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    response_description="created and queued",
    responses={
        200: {
            "model": JobOut,
            "description": "replay of an earlier request with this Idempotency-Key",
        }
    },
)
def post_job(
    spec: Annotated[JobSpec, Body()],  # type: ignore[valid-type]
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, description=IDEMPOTENCY_KEY)
    ] = None,
) -> JobOut:
    job, created = create_job(session, principal, spec, idempotency_key)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return job_out(job)


@router.get("", response_model=JobList)
def list_jobs(
    principal: CurrentPrincipal,
    session: SessionDep,
    status: JobStatus | None = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    dataset: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> JobList:
    q = select(Job).where(Job.owner == principal.owner)
    if status:
        q = q.where(Job.status == status)
    if model:
        q = q.where(Job.model == model)
    if dataset:
        q = q.where(Job.dataset == dataset)
    rows, next_cursor = newest_first(session, q, Job.created_at, Job.id, limit, cursor)
    return JobList(items=[job_out(j) for j in rows], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, principal: CurrentPrincipal, session: SessionDep) -> JobOut:
    return job_out(owned_job(session, principal, job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    status_code=202,
    response_description="running: asked to stop (within about a second, checkpoint kept)",
    responses={200: {"model": JobOut, "description": "queued: cancelled at once"}},
)
def cancel_job(
    job_id: str, principal: CurrentPrincipal, session: SessionDep, response: Response
) -> JobOut:
    job = owned_job(session, principal, job_id)
    if cancel(session, job):
        response.status_code = 200
    session.commit()
    return job_out(job)


@router.post("/{job_id}/resume", response_model=JobOut, status_code=202)
def resume_job(
    job_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    body: Annotated[ResumeRequest | None, Body()] = None,
) -> JobOut:
    job = owned_job(session, principal, job_id)
    if job.status not in ("failed", "cancelled"):
        raise Problem(409, f"only failed or cancelled jobs resume; this one is {job.status}")
    spec = json.loads(json.dumps(job.spec))
    if body is not None:
        if body.epochs is not None and body.steps is not None:
            raise Problem(
                422,
                "give epochs or steps, not both",
                errors=[
                    {
                        "path": "steps",
                        "message": "give epochs or steps, not both",
                        "type": "value_error",
                    }
                ],
            )
        for key in ("epochs", "steps", "max_minutes"):
            value = getattr(body, key)
            if value is not None:
                if key in ("epochs", "steps") and spec["train"].get(key) is None:
                    raise Problem(
                        422,
                        f"this job counts in {'steps' if key == 'epochs' else 'epochs'}",
                        errors=[
                            {"path": key, "message": "wrong budget unit", "type": "value_error"}
                        ],
                    )
                spec["train"][key] = value
    with refusals_as_problems():
        check_quota(session, principal.owner)  # its next checkpoint would fail the job again
        check_served(spec["train"].get("device", "auto"))  # as POST /v1/jobs
    check_active_jobs(session, principal.owner)
    job.spec = spec
    job.status, job.error, job.finished_at = "queued", None, None
    job.cancel_requested, job.attempts, job.lease = False, 0, None
    add_event(session, job, "status", {"status": "queued", "resumed": True})
    enqueue(session, job)
    model_cache().evict(job_id)
    return job_out(job)


@router.post("/{job_id}/clone", response_model=JobOut, status_code=201)
def clone_job(
    job_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
    body: Annotated[CloneRequest | None, Body()] = None,
) -> JobOut:
    src = owned_job(session, principal, job_id)
    spec: dict[str, Any] = json.loads(json.dumps(src.spec))
    spec["name"], spec["tags"] = src.name, dict(src.tags or {})
    if body is not None:
        for key, value in body.model_dump(exclude_none=True).items():
            if isinstance(value, dict) and key in ("params", "optimizer", "train"):
                spec[key] = {**spec.get(key, {}), **value}
            else:
                spec[key] = value
    try:
        parsed = SPEC_ADAPTER.validate_python(spec)
    except ValidationError as exc:
        from fastapi.exceptions import RequestValidationError

        raise RequestValidationError(exc.errors()) from None
    job, _ = create_job(session, principal, parsed)
    job.provenance = {**job.provenance, "cloned_from": src.id}
    session.commit()
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job_out(job)


@router.delete("/{job_id}", status_code=204)
def delete_job(job_id: str, principal: CurrentPrincipal, session: SessionDep) -> Response:
    job = owned_job(session, principal, job_id)
    if job.status not in TERMINAL:
        raise Problem(409, f"job is {job.status}: cancel it first, then delete")
    for table in (Metric, Checkpoint, JobEvent):
        session.execute(delete(table).where(table.job_id == job.id))
    session.delete(job)
    session.commit()
    model_cache().evict(job_id)
    return Response(status_code=204)


@router.get(
    "/{job_id}/metrics",
    response_model=None,
    responses={
        200: {
            "model": MetricsOut,
            "description": "every logged value (format=json), or a CSV table (format=csv)",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
def get_metrics(
    job_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    name: Annotated[str | None, Query(max_length=100)] = None,
    since_step: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    owned_job(session, principal, job_id)
    q = select(Metric.name, Metric.step, Metric.value, Metric.created_at).where(
        Metric.job_id == job_id
    )
    if name:
        q = q.where(Metric.name == name)
    if since_step is not None:  # steps are 32-bit columns: past that, no step is later
        q = q.where(Metric.step > min(since_step, INT32_MAX))
    rows = session.execute(q.order_by(Metric.name, Metric.step)).all()
    if format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["name", "step", "value", "time"])
        for r in rows:
            writer.writerow(
                [r.name, r.step, "" if r.value is None else repr(r.value), r.created_at.isoformat()]
            )
        return Response(
            buf.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{job_id}-metrics.csv"'},
        )
    return {
        "job_id": job_id,
        "metrics": [
            {"name": r.name, "step": r.step, "value": r.value, "time": r.created_at.isoformat()}
            for r in rows
        ],
    }


@router.get("/{job_id}/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(job_id: str, principal: CurrentPrincipal, session: SessionDep) -> Any:
    owned_job(session, principal, job_id)
    rows = session.scalars(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step, Checkpoint.created_at)
    ).all()
    return [
        CheckpointOut(
            id=c.id,
            step=c.step,
            is_best=c.is_best,
            sha256=c.sha256,
            size=c.size,
            created_at=c.created_at,
        )
        for c in rows
    ]


@router.get(
    "/{job_id}/checkpoints/{checkpoint_id}",
    response_class=Response,
    responses={
        200: {
            "content": {"application/octet-stream": {"schema": BINARY}},
            "description": "the checkpoint as safetensors",
        }
    },
)
def download_checkpoint(
    job_id: str, checkpoint_id: str, principal: CurrentPrincipal, session: SessionDep
) -> Response:
    owned_job(session, principal, job_id)
    ckpt = session.get(Checkpoint, checkpoint_id)
    if ckpt is None or ckpt.job_id != job_id:
        raise Problem(404, f"no checkpoint {checkpoint_id!r} in job {job_id}")
    if not checkpoint_ok(ckpt):
        raise Problem(409, f"checkpoint {checkpoint_id} is corrupt (sha256 mismatch)")
    return Response(
        ckpt.data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{job_id}-{checkpoint_id}.safetensors"',
            "X-Checkpoint-SHA256": ckpt.sha256,
            "X-Checkpoint-Step": str(ckpt.step),
        },
    )


# --- Server-Sent Events ----------------------------------------------------------------------

EVENT_BATCH = 500  # events one read takes


def _events_since(job_id: str, after: int) -> tuple[list[JobEvent], JobState | None]:
    """The job's events after seq ``after`` and its state, in one short session."""
    with get_sessionmaker()() as s:
        rows = list(
            s.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.seq > min(after, INT32_MAX))
                .order_by(JobEvent.seq)
                .limit(EVENT_BATCH)
            ).all()
        )
        state = s.execute(select(Job.event_seq, Job.status).where(Job.id == job_id)).first()
        return rows, None if state is None else JobState(state.event_seq, state.status)


def _authorize_stream(
    request: Request, credentials: HTTPAuthorizationCredentials | None, job_id: str
) -> Principal:
    """Authenticate and check ownership in a session closed before the stream starts."""
    with get_sessionmaker()() as s:
        principal = current_principal(request, s, credentials)
        owned_job(s, principal, job_id)
        return principal


def _last_event_id(value: str | None) -> int:
    try:
        after = int(value) if value else 0
    except ValueError:
        after = -1
    if not 0 <= after <= INT64_MAX:
        raise Problem(
            422,
            "Last-Event-ID must be the id of an event of this job",
            errors=[
                {
                    "path": "Last-Event-ID",
                    "message": f"not an integer from 0 to {INT64_MAX}",
                    "type": "int_parsing",
                }
            ],
        )
    return after


class _EventStreamResponse(StreamingResponse):
    """Releases the stream's slot however the response ends (done, error, disconnect)."""

    def __init__(self, content: Any, slot: Slot, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.slot = slot

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # off the event loop (a Redis call), and nothing to await when cancelled
            asyncio.get_running_loop().run_in_executor(None, STREAM_SLOTS.release, self.slot)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "status, progress and metrics events",
        },
    },
)
async def job_events(
    job_id: str,
    request: Request,
    # the bearer scheme alone (no database session: the stream must not hold one)
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
    poll: Annotated[float, Query(ge=0.05, le=10)] = 0.25,
) -> StreamingResponse:
    """The job's events as SSE; reconnect with ``Last-Event-ID`` to miss nothing.

    Each event's ``id`` is its number within the job (1, 2, ...). The stream ends after
    the event that makes the job terminal. No database connection is held while it
    waits: the process watches all its streams' jobs in one query a tick.
    """
    principal = await run_in_threadpool(_authorize_stream, request, credentials, job_id)
    after = _last_event_id(last_event_id)
    slot = await run_in_threadpool(STREAM_SLOTS.acquire, principal.key_id)

    async def stream() -> Any:
        nonlocal after
        yield "retry: 1000\n\n"
        watch = event_watch()
        with watch.watch(job_id, poll):
            rows, state = await run_in_threadpool(_events_since, job_id, after)
            idle = 0.0
            while True:
                for ev in rows:
                    after = ev.seq
                    yield f"id: {ev.seq}\nevent: {ev.kind}\ndata: {json.dumps(ev.data)}\n\n"
                if state is None:  # deleted
                    return
                if len(rows) == EVENT_BATCH:
                    rows, state = await run_in_threadpool(_events_since, job_id, after)
                    continue
                if state.status in TERMINAL and after >= state.event_seq:
                    return
                while True:  # wait, in memory, for the watch to see something new
                    if await request.is_disconnected():
                        return
                    await asyncio.sleep(poll)
                    idle += poll
                    if idle >= 15:
                        idle = 0.0
                        yield ": keep-alive\n\n"
                        await run_in_threadpool(STREAM_SLOTS.refresh, slot)
                    seen = watch.state(job_id)
                    if seen is GONE:
                        return
                    if seen is not None and (
                        seen.event_seq > after
                        or (seen.event_seq >= state.event_seq and seen.status != state.status)
                    ):
                        break
                idle = 0.0
                rows, state = await run_in_threadpool(_events_since, job_id, after)

    return _EventStreamResponse(
        stream(),
        slot,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
