"""API keys (admin only): create (the key is shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.deps import AdminPrincipal, SessionDep
from app.auth import Principal, create_key, revoke_key
from app.db.models import ApiKey
from app.problems import Problem
from app.schemas import KeyCreate, KeyCreated, KeyOut

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def key_out(row: ApiKey) -> KeyOut:
    return KeyOut(
        id=row.id,
        name=row.name,
        owner=row.owner,
        prefix=row.prefix,
        is_admin=row.is_admin,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def owner_exists(session: Session, admin: Principal, owner: str) -> bool:
    """An owner exists when the admin is it or some key (revoked ones too: their jobs and
    datasets stay theirs) has it."""
    if owner == admin.owner:
        return True
    return session.scalar(select(ApiKey.id).where(ApiKey.owner == owner).limit(1)) is not None


@router.post("", status_code=201, response_model=KeyCreated)
def post_key(body: KeyCreate, admin: AdminPrincipal, session: SessionDep) -> KeyCreated:
    if body.owner is not None and not owner_exists(session, admin, body.owner):
        raise Problem(
            422,
            f"owner: no key has owner {body.owner!r}; leave it out for a new owner",
            errors=[
                {
                    "path": "owner",
                    "message": "an existing owner (that of some key, or the admin's)",
                    "type": "value_error",
                }
            ],
        )
    row, key = create_key(session, body.name, owner=body.owner, admin=body.admin)
    session.commit()
    return KeyCreated(**key_out(row).model_dump(), key=key)


@router.get("", response_model=list[KeyOut])
def list_keys(_: AdminPrincipal, session: SessionDep) -> list[KeyOut]:
    return [key_out(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.created_at))]


@router.delete("/{key_id}", status_code=204)
def delete_key(key_id: str, _: AdminPrincipal, session: SessionDep) -> Response:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise Problem(404, f"no key {key_id!r}")
    if row.revoked_at is None:
        revoke_key(session, row)
        session.commit()
    return Response(status_code=204)
