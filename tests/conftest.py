"""Shared fixtures: real databases (a SQLite file and a fresh PostgreSQL database) and
real Redis; ``api_env`` points the settings at a migrated one. Nothing of ours is mocked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from bench import stack as shared


@contextmanager
def _required() -> Iterator[None]:
    try:
        yield
    except shared.ServiceUnavailable as exc:
        pytest.fail(f"{exc} (.ci/run starts it)")


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards (bench/stack.py's)."""
    with _required(), shared.fresh_pg_database("deepzoo_t") as url:
        yield url


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database for the in-process tests of this session."""
    with fresh_pg_database() as url:
        yield url


def redis_url(db: int) -> str:
    """The machine's Redis, database ``db`` emptied (bench/stack.py's)."""
    with _required():
        return shared.redis_url(db)


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
