"""Engine and sessions. SQLite gets WAL and a busy timeout so the API and workers share it."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings

log = logging.getLogger("deepzoo.db")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1].split("?", 1)[0] if "///" in url else ""
        if path and path != ":memory:" and not path.startswith("file:"):
            private_sqlite_file(Path(path))
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite file 0600 (owner only), as the admin key file is: it holds key
    digests, uploads and checkpoints. SQLite gives its -wal and -shm files the mode of
    the database file; a file an older version made 0644 is tightened, companions too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if p.exists() and p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)
        except OSError as exc:  # not ours to change (a read-only mount, another user's)
            log.warning("cannot make %s private: %s", p, exc)


# The engine and its sessionmaker, made together under one lock so that a reset cannot
# land between them: with two separate caches, a thread that was making the sessionmaker
# while another reset the engine stored one bound to the old engine, for good.
_LOCK = threading.Lock()
_CACHED: tuple[Engine, sessionmaker[Session]] | None = None


def _cached() -> tuple[Engine, sessionmaker[Session]]:
    global _CACHED
    with _LOCK:
        if _CACHED is None:
            engine = make_engine(get_settings().resolved_database_url)
            _CACHED = engine, sessionmaker(engine, expire_on_commit=False)
        return _CACHED


def get_engine() -> Engine:
    return _cached()[0]


def get_sessionmaker() -> sessionmaker[Session]:
    return _cached()[1]


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_engine() -> None:
    """Forget the cached engine (after a fork or a settings change)."""
    global _CACHED
    with _LOCK:
        if _CACHED is not None:
            _CACHED[0].dispose(close=False)
        _CACHED = None
