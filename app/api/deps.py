"""Dependencies: the database session and the authenticated principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.auth import Principal, authenticate
from app.db.models import Job
from app.db.session import session_scope
from app.problems import Problem


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
