"""Dependencies: the database session, the authenticated principal, and a job's trained
model for the inference routes (``LoadedModel``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.auth import Principal, authenticate
from app.datasets import load_dataset
from app.db.models import Job
from app.db.session import session_scope
from app.inference import Loaded, cache, load_model
from app.limits import INFERENCE_LIMITER
from app.problems import Problem
from app.schemas import TERMINAL
from models.data import Dataset

REVALIDATE_SECONDS = 30.0


def get_db() -> Iterator[Session]:
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


# The OpenAPI document's security scheme (``/docs`` gets Authorize, generated clients send
# the key). auto_error=False: a missing or malformed header is answered below as a problem
# document, not FastAPI's plain 403.
bearer = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="API key",
    description="`Authorization: Bearer <key>`: the admin key printed at the first start "
    "(or DEEPZOO_API_KEY), or one made with POST /v1/keys.",
    auto_error=False,
)


def current_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise Problem(
            401,
            "missing bearer API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = authenticate(session, token)
    if principal is None:
        raise Problem(
            401,
            "invalid or revoked API key",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        raise Problem(403, "this operation needs an admin key")
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_admin)]


def owned_job(session: Session, principal: Principal, job_id: str) -> Job:
    """The job if it belongs to the caller; 404 otherwise (existence is not revealed)."""
    job = session.get(Job, job_id)
    if job is None or job.owner != principal.owner:
        raise Problem(404, f"no job {job_id!r}")
    return job


def job_dataset(job: Job) -> Dataset:
    """The data a job trained on: a built-in, or the owner's upload from the database."""
    try:
        return load_dataset(job.dataset)
    except (KeyError, LookupError):
        raise Problem(409, f"dataset {job.dataset!r} of job {job.id} is not available") from None


def _served_model(session: Session, principal: Principal, job_id: str) -> Loaded:
    """The job's model from the cache; the database is read only on a miss or to revalidate."""
    models = cache()
    item = models.get(job_id)
    if item is not None and item.owner != principal.owner:
        raise Problem(404, f"no job {job_id!r}")
    if item is not None and time.monotonic() - item.checked_at < REVALIDATE_SECONDS:
        return item
    job = owned_job(session, principal, job_id)
    if item is not None and item.checkpoint_id == job.checkpoint_id:
        if job.status in TERMINAL:
            item.checked_at = time.monotonic()
        return item
    item = load_model(session, job)
    item.checked_at = time.monotonic() if job.status in TERMINAL else 0.0
    models.put(item)
    return item


class JobModel:
    """One inference request's access to a job's trained model.

    The route reads its own query and body first (a malformed request is a 422 and costs
    no rate limit), then ``load()``: the caller's inference rate limit (429), the owner
    check (404), the checkpoint (409 without one) and the module with its params and
    ``DataInfo``, cached across requests.
    """

    def __init__(self, session: Session, principal: Principal, job_id: str) -> None:
        self.session, self.principal, self.job_id = session, principal, job_id
        self._job: Job | None = None

    def load(self, checkpoint: str | None = None) -> Loaded:
        """The served model (the job's best checkpoint, else its latest), or the named
        ``checkpoint`` of the job, loaded afresh and not cached."""
        INFERENCE_LIMITER.take(self.principal.key_id)
        item = _served_model(self.session, self.principal, self.job_id)
        if checkpoint is not None and checkpoint != item.checkpoint_id:
            item = load_model(self.session, self.job(), checkpoint)
        return item

    def job(self) -> Job:
        """The job's row (owner checked), read once per request."""
        if self._job is None:
            self._job = owned_job(self.session, self.principal, self.job_id)
        return self._job

    def dataset(self) -> Dataset:
        """The data the job trained on (409 when it is gone)."""
        return job_dataset(self.job())


def job_model(job_id: str, session: SessionDep, principal: CurrentPrincipal) -> JobModel:
    return JobModel(session, principal, job_id)


# every inference route's prologue: ``item = model.load()``, then the capability it needs
LoadedModel = Annotated[JobModel, Depends(job_model)]
