"""Dependencies: the database session and the authenticated principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.auth import Principal, authenticate
from app.db.models import Job
from app.db.session import session_scope
from app.problems import Problem


def get_db() -> Iterator[Session]:
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


def current_principal(request: Request, session: SessionDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "missing bearer API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = authenticate(session, token.strip())
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
