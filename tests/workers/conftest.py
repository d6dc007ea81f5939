"""Runner and reconciler tests run in process on ``api_env`` (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from app.config import get_settings


@pytest.fixture(autouse=True)
def _env(api_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPZOO_CHECKPOINT_MIN_SECONDS", "0")  # every offered checkpoint
    get_settings.cache_clear()
