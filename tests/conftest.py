"""Shared fixtures: real databases (a SQLite file and a fresh PostgreSQL database) and
real Redis; ``api_env`` points the settings at a migrated one. Nothing of ours is mocked."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get(
    "DEEPZOO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("DEEPZOO_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return str(exc)


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards."""
    err = _pg_available()
    if err:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL} (.ci/run starts it): {err}")
    name = f"deepzoo_t_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database for the in-process tests of this session."""
    with fresh_pg_database() as url:
        yield url


def redis_url(db: int) -> str:
    url = f"{REDIS_URL}/{db}"
    try:
        r = redis.Redis.from_url(url, socket_timeout=2)
        r.flushdb()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required at {REDIS_URL} (.ci/run starts it): {exc}")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'deepzoo.db'}"
    return request.getfixturevalue("pg_database")


def _reset_caches() -> None:
    from app import auth, inference, provenance, queue
    from app.config import get_settings
    from app.db.session import reset_engine

    get_settings.cache_clear()
    reset_engine()
    queue.client.cache_clear()
    auth.KEY_CACHE._items.clear()
    inference._CACHE = None
    provenance.code_provenance.cache_clear()


@pytest.fixture
def api_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DEEPZOO_DATABASE_URL", database_url)
    monkeypatch.setenv("DEEPZOO_BROKER_URL", redis_url(11))
    monkeypatch.setenv("DEEPZOO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DEEPZOO_API_KEY", "dz_test_admin_key_0123456789")
    monkeypatch.setenv("DEEPZOO_RECONCILE_SECONDS", "3600")
    _reset_caches()
    from app.db import migrate
    from app.db.session import get_engine

    if database_url.startswith("postgresql"):
        with get_engine().begin() as conn:  # a clean schema for every test
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate.upgrade()
    yield database_url
    _reset_caches()
