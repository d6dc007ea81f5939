"""Limits: active jobs per owner, model size, inference rate (429 with Retry-After)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.config import get_settings
from app.limits import count_parameters
from models.registry import get_family

SPEC = {"model": "mlp", "dataset": "moons", "params": {"hidden": [8]}, "train": {"epochs": 1}}


def test_parameter_count_on_the_meta_device() -> None:
    params = get_family("mlp").params(hidden=[8])
    assert count_parameters("mlp", "moons", params) == (2 * 8 + 8) + (8 * 2 + 2)


def test_model_size_limit(client: TestClient) -> None:
    big = {**SPEC, "dataset": "mnist5k", "params": {"hidden": [4096] * 8}}
    r = client.post("/v1/jobs", json=big)
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "params"
    assert "parameters" in r.json()["detail"]


def test_active_jobs_per_owner(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPZOO_MAX_ACTIVE_JOBS", "2")
    get_settings.cache_clear()
    first = client.post("/v1/jobs", json=SPEC).json()
    assert client.post("/v1/jobs", json=SPEC).status_code == 201
    r = client.post("/v1/jobs", json=SPEC)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert r.json()["status"] == 429
    client.post(f"/v1/jobs/{first['id']}/cancel")
    assert client.post("/v1/jobs", json=SPEC).status_code == 201  # room again


def test_inference_rate_limit(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPZOO_INFERENCE_RATE", "0.5")
    monkeypatch.setenv("DEEPZOO_INFERENCE_BURST", "2")
    get_settings.cache_clear()
    codes = [
        client.post("/v1/jobs/job_missing/predict", json={"inputs": [[0.0]]}).status_code
        for _ in range(3)
    ]
    assert codes == [404, 404, 429]
    r = client.post("/v1/jobs/job_missing/predict", json={"inputs": [[0.0]]})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_params_the_dataset_cannot_take_are_a_422_not_a_500(client: TestClient) -> None:
    spec = {
        "model": "multitask",
        "dataset": "multitask_synth",
        "params": {"weighting": "fixed", "weights": {"nope": 1.0}},
    }
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "params" and "one weight per task" in r.text
