"""Admitting and cancelling jobs: what ``POST /v1/jobs``, clone, resume and sweeps share.

``check_spec`` is every refusal a spec can earn that does not depend on how busy its
owner is (its data, the model's size, the batch size, the budget unit); ``create_job``
adds the owner's limits (active jobs, storage) and the live workers, then commits and
sends. A sweep (``app/sweeps.py``) runs ``check_spec`` on every child before it creates
anything, then ``create_job`` for each child as a slot opens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth import Principal
from app.datasets import check_upload_kind, job_data_info
from app.db.models import Job, new_id, utcnow
from app.db.ops import add_event
from app.limits import (
    check_active_jobs,
    check_batch_size,
    check_budget_unit,
    check_model_size,
    check_optimizer,
)
from app.problems import Problem, refusals_as_problems
from app.provenance import code_provenance
from app.queue import queue_for, send_job
from app.schemas import TERMINAL, JobSpec
from app.storage import check_quota
from app.workers_live import check_served
from models.data import DataInfo
from models.registry import get_family

SPEC_ADAPTER: TypeAdapter[Any] = TypeAdapter(JobSpec)  # type: ignore[arg-type]


def fill_defaults(spec: Any) -> dict[str, Any]:
    """The spec as stored: every default filled in, epochs or steps chosen."""
    family = get_family(spec.model)
    data = spec.model_dump(mode="json")
    train = data["train"]
    if train["epochs"] is None and train["steps"] is None:
        if family.default_steps is not None:  # an RL family counts environment steps
            train["steps"] = family.default_steps
        else:
            train["epochs"] = family.default_epochs
    if train["batch_size"] is None:
        train["batch_size"] = family.default_batch_size
    return data


def spec_digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def enqueue(session: Session, job: Job) -> None:
    """Commit, then send the task (the message carries only the id).

    ``sent_at`` marks the attempt before the commit, so the reconciler leaves the job
    alone while its message is in flight; if the broker is down, the reconciler sends
    it again once ``DEEPZOO_QUEUED_RESEND_SECONDS`` have passed.
    """
    job.sent_at = utcnow()
    session.commit()
    send_job(job.id, job.queue, attempt_tag=f"{job.attempts}-{new_id('m')[2:]}")


def check_spec(session: Session, owner: str, spec: Any) -> tuple[dict[str, Any], DataInfo]:
    """The stored spec and its data's ``DataInfo``, or the 422 this spec earns whoever
    submits it and whenever: its dataset (an upload must be the owner's and fit the
    family), the model's size, the batch size, the budget unit."""
    data = fill_defaults(spec)
    with refusals_as_problems():
        info = job_data_info(session, owner, spec.dataset)  # an upload must be theirs
        check_upload_kind(spec.model, spec.dataset, info)  # a table or an edge list, as fits
    parameters = check_model_size(spec.model, info, spec.params)
    check_optimizer(spec.model, spec.optimizer, parameters)
    check_batch_size(spec.model, spec.params, data["train"]["batch_size"], info)
    check_budget_unit(spec.model, data["train"])
    return data, info


def create_job(
    session: Session,
    principal: Principal,
    spec: Any,
    idempotency_key: str | None = None,
    link: Callable[[Job], None] | None = None,
) -> tuple[Job, bool]:
    """Admit, commit and send a job; ``link`` may touch the new row (and add rows of its
    own) before the commit, so whatever it writes commits with the job or not at all."""
    data = fill_defaults(spec)
    digest = spec_digest(data)
    if idempotency_key is not None:
        existing = session.scalar(
            select(Job).where(Job.owner == principal.owner, Job.idempotency_key == idempotency_key)
        )
        if existing is not None:
            return _replay(existing, digest), False
    check_active_jobs(session, principal.owner)
    with refusals_as_problems():
        check_quota(session, principal.owner)  # 422 naming storage at the quota
    data, _ = check_spec(session, principal.owner, spec)
    with refusals_as_problems():
        check_served(data["train"]["device"])  # 422 when live workers exist and none serves it
    job = Job(
        id=new_id("job"),
        owner=principal.owner,
        name=data.pop("name"),
        model=data["model"],
        dataset=data["dataset"],
        tags=data.pop("tags"),
        spec=data,
        status="queued",
        queue=queue_for(data["train"]["device"]),
        idempotency_key=idempotency_key,
        spec_hash=digest,
        provenance={"seed": data["train"]["seed"], **code_provenance()},
    )
    session.add(job)
    add_event(session, job, "status", {"status": "queued"})
    if link is not None:
        link(job)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request with the same Idempotency-Key won
        session.rollback()
        existing = session.scalar(
            select(Job).where(Job.owner == principal.owner, Job.idempotency_key == idempotency_key)
        )
        if existing is None:
            raise
        return _replay(existing, digest), False
    enqueue(session, job)
    return job, True


def _replay(existing: Job, digest: str) -> Job:
    if existing.spec_hash != digest:
        raise idempotency_conflict("job spec")
    return existing


def idempotency_conflict(what: str) -> Problem:
    """The 409 for an ``Idempotency-Key`` reused with another body (jobs and sweeps)."""
    return Problem(
        409,
        f"Idempotency-Key was already used with a different {what}",
        errors=[
            {
                "path": "Idempotency-Key",
                "message": "reused with another body",
                "type": "idempotency_conflict",
            }
        ],
    )


def cancel(session: Session, job: Job) -> bool:
    """Cancel a job that is not terminal (the caller commits): a queued one at once (True),
    a running one by asking its worker to stop within about a second (False)."""
    if job.status in TERMINAL:
        raise Problem(409, f"job is already {job.status}")
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utcnow()
        add_event(session, job, "status", {"status": "cancelled"})
        return True
    job.cancel_requested = True
    return False
