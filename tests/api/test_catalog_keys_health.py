"""Catalog, keys, health and Prometheus metrics."""

from __future__ import annotations

import os
import stat

from fastapi.testclient import TestClient

from models.registry import REGISTRY


def test_models_catalog(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert {m["name"] for m in models} == set(REGISTRY)
    mlp = client.get("/v1/models/mlp").json()
    assert mlp["capabilities"] == ["predict"]
    assert "sine_gap" in mlp["datasets"]
    props = mlp["params_schema"]["properties"]
    assert {"hidden", "activation", "batchnorm", "dropout"} <= set(props)
    assert all(p.get("description") for p in props.values())
    assert client.get("/v1/models/nope").status_code == 404


def test_openapi_shows_every_model_spec(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "MlpJobSpec" in schemas and "McDropoutJobSpec" in schemas


def test_datasets(client: TestClient) -> None:
    names = {d["id"] for d in client.get("/v1/datasets").json()}
    assert {"sine_gap", "diabetes", "moons", "digits", "mnist5k"} <= names
    d = client.get("/v1/datasets/sine_gap").json()
    assert d["task"] == "regression" and d["shape"] == [400, 1]
    assert client.get("/v1/datasets/nope").status_code == 404


def test_keys_lifecycle(client: TestClient, api_env: str) -> None:
    created = client.post("/v1/keys", json={"name": "alice"})
    assert created.status_code == 201
    key = created.json()["key"]
    listed = client.get("/v1/keys").json()
    assert any(k["id"] == created.json()["id"] for k in listed)
    assert all("key" not in k and "key_hash" not in k for k in listed)
    alice = TestClient(client.app, raise_server_exceptions=False)
    alice.headers["Authorization"] = f"Bearer {key}"
    assert alice.get("/v1/jobs").status_code == 200
    assert alice.post("/v1/keys", json={"name": "x"}).status_code == 403
    assert client.delete(f"/v1/keys/{created.json()['id']}").status_code == 204
    assert alice.get("/v1/jobs").status_code == 401  # refused at once


def test_admin_key_file_is_private(client: TestClient) -> None:
    from app.config import get_settings

    path = get_settings().key_file
    assert path.read_text().strip() == "dz_test_admin_key_0123456789"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_keys_hashed_at_rest(client: TestClient) -> None:
    from sqlalchemy import select

    from app.db.models import ApiKey
    from app.db.session import get_sessionmaker

    with get_sessionmaker()() as s:
        hashes = s.scalars(select(ApiKey.key_hash)).all()
    assert hashes and "dz_test_admin_key_0123456789" not in hashes
    assert all(len(h) == 64 for h in hashes)


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["database"] == "ok" and r.json()["broker"] == "ok"
    client.post("/v1/jobs", json={"model": "mlp", "dataset": "moons"})
    text = client.get("/metrics").text
    assert 'deepzoo_jobs{status="queued"} 1.0' in text
    assert "deepzoo_http_requests_total" in text
    assert 'route="/v1/jobs"' in text


def test_security_headers(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"


def test_non_finite_outputs_serialise_as_null() -> None:
    import torch

    from app.inference import to_jsonable

    out = to_jsonable({"mean": torch.tensor([[1.0], [float("inf")], [float("nan")]])})
    assert out == {"mean": [[1.0], [None], [None]]}
