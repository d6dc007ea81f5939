"""API keys (admin only): create (the key is shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from app.api.deps import AdminPrincipal, SessionDep
from app.auth import create_key, revoke_key
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


@router.post("", status_code=201, response_model=KeyCreated)
def post_key(body: KeyCreate, _: AdminPrincipal, session: SessionDep) -> KeyCreated:
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
