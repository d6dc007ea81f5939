"""The inference cache takes its size from ``DEEPZOO_INFERENCE_CACHE_SIZE`` whichever route
touches it first: a resume or a delete evicts through it before any inference loads."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app import inference
from app.config import get_settings

JOB = {"model": "mlp", "dataset": "sine_gap", "params": {"hidden": [8]}, "train": {"epochs": 1}}


def test_the_cache_is_sized_by_the_setting_when_a_resume_comes_first(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPZOO_INFERENCE_CACHE_SIZE", "3")
    get_settings.cache_clear()
    assert inference._CACHE is None  # nothing has loaded a model yet
    job = client.post("/v1/jobs", json=JOB).json()
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert client.post(f"/v1/jobs/{job['id']}/resume", json={}).status_code == 202
    assert inference.cache().size == 3
