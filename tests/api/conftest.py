"""The app in process on a migrated database (SQLite and PostgreSQL), with a real Redis
broker and no worker: jobs stay queued unless a test moves them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import redis_url


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


@pytest.fixture
def client(api_env: str) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = "Bearer dz_test_admin_key_0123456789"
        yield c


@pytest.fixture
def other_client(client: TestClient) -> TestClient:
    """A second owner's client on the same app."""
    created = client.post("/v1/keys", json={"name": "someone else"}).json()
    other = TestClient(client.app, raise_server_exceptions=False)
    other.headers["Authorization"] = f"Bearer {created['key']}"
    return other
