"""Keyset paging for the newest-first lists (jobs, sweeps): the cursor is the last row's
``(created_at, id)``, opaque to the client, so a page never repeats or skips a row when
rows are added meanwhile."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.problems import Problem

T = TypeVar("T")


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(created_at, id)`` a cursor of ours names; a 422 naming ``cursor`` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:  # every cursor this API returns names its offset
            raise ValueError("naive datetime")
        return when.astimezone(UTC), str(row_id)
    except Exception:
        raise Problem(
            422,
            "malformed cursor",
            errors=[
                {
                    "path": "cursor",
                    "message": "not a cursor returned by this API",
                    "type": "value_error",
                }
            ],
        ) from None


def newest_first(
    session: Session,
    q: Select[T],
    created: InstrumentedAttribute[Any],
    row_id: InstrumentedAttribute[Any],
    limit: int,
    cursor: str | None,
) -> tuple[list[T], str | None]:
    """One page of ``q``, newest first, after ``cursor``: its rows and the next cursor
    (None on the last page)."""
    if cursor:
        when, after = decode_cursor(cursor)
        q = q.where(or_(created < when, and_(created == when, row_id < after)))
    rows = list(session.scalars(q.order_by(created.desc(), row_id.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(getattr(last, created.key), getattr(last, row_id.key))
