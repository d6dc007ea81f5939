"""A capability the model lacks answers 409 naming what it can do (no database needed)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app import problems
from models.family import Capability
from models.registry import get_family


def test_a_missing_capability_is_a_409_naming_the_models_capabilities() -> None:
    app = FastAPI()
    problems.install(app)

    @app.get("/sample/{model}")
    def sample(model: str) -> None:
        get_family(model).capability(Capability.SAMPLE)

    client = TestClient(app)
    r = client.get("/sample/mlp")
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["detail"] == "model 'mlp' cannot sample; it can: predict"
    assert body["capabilities"] == ["predict"] and body["instance"] == "/sample/mlp"
    assert client.get("/sample/gan").status_code == 200
