"""The app in process (``api_env`` in tests/conftest.py) with no worker: jobs stay queued
unless a test moves them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient


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
