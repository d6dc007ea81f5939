"""Limits: active jobs per owner, model size, inference rate (429 with Retry-After)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.config import get_settings
from app.limits import RateLimiter, count_parameters
from app.problems import Problem
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


def test_api_replicas_share_one_bucket_per_key(
    api_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two limiters, as two API processes behind a load balancer, on the same Redis."""
    monkeypatch.setenv("DEEPZOO_INFERENCE_RATE", "0.01")
    monkeypatch.setenv("DEEPZOO_INFERENCE_BURST", "3")
    get_settings.cache_clear()
    a, b = RateLimiter(), RateLimiter()
    a.take("key_1")
    b.take("key_1")
    a.take("key_1")
    with pytest.raises(Problem) as refused:
        b.take("key_1")  # the fourth request in the burst, whichever replica serves it
    assert refused.value.status == 429
    assert int(refused.value.headers["Retry-After"]) >= 99  # one token at 0.01/s
    b.take("key_2")  # another key has its own bucket


def test_limiter_falls_back_to_a_local_bucket_without_redis(
    api_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.stack import free_port

    monkeypatch.setenv("DEEPZOO_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing
    monkeypatch.setenv("DEEPZOO_INFERENCE_RATE", "0.01")
    monkeypatch.setenv("DEEPZOO_INFERENCE_BURST", "2")
    get_settings.cache_clear()
    limiter = RateLimiter()
    limiter.take("key_1")
    limiter.take("key_1")
    with pytest.raises(Problem) as refused:
        limiter.take("key_1")
    assert refused.value.status == 429


def test_boltzmann_exact_on_784_units_is_a_422_naming_params(client: TestClient) -> None:
    """Enumerating 2^784 states is refused at build, before the job exists."""
    spec = {"model": "boltzmann", "dataset": "mnist5k_bin", "params": {"sampler": "exact"}}
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "params" and "params.sampler exact" in r.text


def test_reverse_kl_on_a_dataset_without_a_known_density_is_a_422(client: TestClient) -> None:
    spec = {
        "model": "flow",
        "dataset": "moons",
        "params": {"transform": "realnvp", "objective": "reverse_kl", "target": "dataset"},
    }
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "params" and "known" in r.json()["detail"]
