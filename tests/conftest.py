"""Shared fixtures: real databases (a SQLite file and a fresh PostgreSQL database) and
real Redis; ``api_env`` points the settings at a migrated one. Nothing of ours is mocked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support.services import fresh_pg_database, redis_url, reset_caches


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database for the in-process tests of this session."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'deepzoo.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def api_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DEEPZOO_DATABASE_URL", database_url)
    monkeypatch.setenv("DEEPZOO_BROKER_URL", redis_url(11))
    monkeypatch.setenv("DEEPZOO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DEEPZOO_API_KEY", "dz_test_admin_key_0123456789")
    monkeypatch.setenv("DEEPZOO_RECONCILE_SECONDS", "3600")
    reset_caches()
    from app.db import migrate
    from app.db.session import get_engine

    if database_url.startswith("postgresql"):
        with get_engine().begin() as conn:  # a clean schema for every test
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate.upgrade()
    yield database_url
    reset_caches()
