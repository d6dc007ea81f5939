"""Every built-in dataset (``models.data`` registry) and every catalog entry
(``models.registry.REGISTRY``) answers 200 with a body its response model accepts:
``GET /v1/datasets/multitask_synth`` answered 500 while ``DatasetOut.task`` left out
``multitask``."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.schemas import DatasetOut, ModelOut
from models import data as zoo_data
from models.registry import REGISTRY

BUILTINS = sorted(zoo_data.catalog())


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_dataset(client: TestClient, name: str) -> None:
    r = client.get(f"/v1/datasets/{name}")
    assert r.status_code == 200, r.text
    body = DatasetOut.model_validate(r.json())
    data = zoo_data.load_data(name)
    info = data.info
    assert body.id == body.name == name and body.kind == "builtin"
    assert body.description == zoo_data.catalog()[name]
    assert body.task == info.task
    # an environment holds no rows: no shape (its spaces are in its DataInfo)
    shape = [info.n_train, *info.input_shape] if data.size().examples else None
    assert body.shape == shape


def test_the_multitask_builtin_says_multitask(client: TestClient) -> None:
    r = client.get("/v1/datasets/multitask_synth")
    assert r.status_code == 200 and r.json()["task"] == "multitask", r.text
    listed = {d["id"]: d for d in client.get("/v1/datasets").json()}
    assert set(BUILTINS) <= set(listed)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_catalog_entry(client: TestClient, name: str) -> None:
    r = client.get(f"/v1/models/{name}")
    assert r.status_code == 200, r.text
    body = ModelOut.model_validate(r.json())
    family = REGISTRY[name]
    assert body.name == name and body.description == family.description
    # every declared capability, and the routes it implies (encode, decode, interpolate)
    assert set(body.capabilities) >= {c.value for c in family.capabilities}
    assert set(body.datasets) <= set(BUILTINS), set(body.datasets) - set(BUILTINS)
    assert body.params_schema.get("type") == "object" and body.default_epochs >= 1
