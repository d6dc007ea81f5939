"""The OpenAPI document: bearer scheme, one shared Problem, binary PNGs, every status a
route answers, typed bodies (a generated client uses it: tests/e2e/test_generated_client.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app

BINARY = {"type": "string", "format": "binary"}
PNG_ROUTES = ["plot.png", "reliability.png", "interpolate.png", "density.png", "samples"]


@pytest.fixture(scope="module")
def bare() -> Iterator[TestClient]:
    """The app without its lifespan: the document, the docs and the index need no database."""
    yield TestClient(create_app(), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def doc(bare: TestClient) -> dict[str, Any]:
    r = bare.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield method, path, op


def test_bearer_security_scheme(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "API key",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    for method, path, op in operations(doc):
        needs_key = path.startswith("/v1/")
        assert (op.get("security") == [{"bearer": []}]) == needs_key, (method, path)


def test_problem_is_defined_once_and_referenced(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    assert "Problem" in doc["components"]["schemas"]
    # the problem's properties appear once: in its definition, nowhere inline
    assert text.count('"errors": {"type": "array"') == 1
    for method, path, op in operations(doc):
        for code, response in op["responses"].items():
            if code[0] in "45":
                content = response["content"]
                assert content == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (method, path, code)


@pytest.mark.parametrize("route", PNG_ROUTES)
def test_png_is_binary(doc: dict[str, Any], route: str) -> None:
    (op,) = [o for m, p, o in operations(doc) if p == f"/v1/jobs/{{job_id}}/{route}"]
    assert op["responses"]["200"]["content"]["image/png"]["schema"] == BINARY


def schema_of(op: dict[str, Any], code: str, media: str = "application/json") -> Any:
    return op["responses"][code]["content"][media]["schema"]


def op_at(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return dict(doc["paths"][path][method])


def test_every_success_status_is_declared_with_its_body(doc: dict[str, Any]) -> None:
    job = {"$ref": "#/components/schemas/JobOut"}
    post = op_at(doc, "post", "/v1/jobs")
    assert schema_of(post, "201") == job and schema_of(post, "200") == job  # replay
    cancel = op_at(doc, "post", "/v1/jobs/{job_id}/cancel")
    assert schema_of(cancel, "202") == job and schema_of(cancel, "200") == job  # queued
    metrics = op_at(doc, "get", "/v1/jobs/{job_id}/metrics")
    assert schema_of(metrics, "200") == {"$ref": "#/components/schemas/MetricsOut"}
    assert schema_of(metrics, "200", "text/csv") == {"type": "string"}
    checkpoint = op_at(doc, "get", "/v1/jobs/{job_id}/checkpoints/{checkpoint_id}")
    assert schema_of(checkpoint, "200", "application/octet-stream") == BINARY
    for path, model in [
        ("/v1/jobs/{job_id}/samples", "SamplesOut"),
        ("/v1/jobs/{job_id}/log-prob", "LogProbOut"),
        ("/v1/jobs/{job_id}/encode", "EncodeOut"),
        ("/v1/jobs/{job_id}/decode", "DecodeOut"),
        ("/readyz", "Ready"),
        ("/healthz", "Health"),
        ("/", "Index"),
        ("/v1", "Index"),
    ]:
        (op,) = doc["paths"][path].values()
        assert schema_of(op, "200") == {"$ref": f"#/components/schemas/{model}"}, path
    # every 2xx has a body schema, except the 204s
    for _, path, op in operations(doc):
        for code, response in op["responses"].items():
            if code.startswith("2") and code != "204":
                content = response.get("content") or {}
                assert content and all("schema" in m for m in content.values()), (path, code)


def test_typed_samples_metrics_and_spec(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    number_or_null = {"anyOf": [{"type": "number"}, {"type": "null"}]}
    samples = schemas["SamplesOut"]["properties"]["samples"]
    assert samples["items"] == {"type": "array", "items": number_or_null}
    assert schemas["JobOut"]["properties"]["metrics"]["additionalProperties"] == number_or_null
    spec = schemas["JobOut"]["properties"]["spec"]
    refs = {s["$ref"].rsplit("/", 1)[1] for s in spec["oneOf"]}
    assert {"McDropoutJobSpec", "MlpJobSpec", "VaeJobSpec"} <= refs
    assert spec["discriminator"]["propertyName"] == "model"
    point = schemas["MetricPoint"]["properties"]
    assert point["value"]["anyOf"] == number_or_null["anyOf"]
    # no -Input/-Output copies of the spec models
    assert not [name for name in schemas if re.search(r"-(Input|Output)$", name)]


def test_bearer_header_variants_are_401_problems(client: TestClient) -> None:
    for header in ["", "Bearer", "Bearer   ", "Basic abc", "Token x", "Bearer wrong-key"]:
        r = client.get("/v1/models", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert (
        client.get(
            "/v1/models", headers={"Authorization": "bearer dz_test_admin_key_0123456789"}
        ).status_code
        == 200
    )


def test_cancel_of_a_queued_job_answers_the_declared_200(client: TestClient) -> None:
    job = client.post(
        "/v1/jobs", json={"model": "mlp", "dataset": "moons", "train": {"epochs": 1}}
    ).json()
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["spec"]["model"] == "mlp" and r.json()["tags"] == {}


def test_malformed_multipart_answers_the_declared_400(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    declared = doc["paths"]["/v1/datasets"]["post"]["responses"]
    assert declared["400"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    for content_type in ["multipart/form-data; boundary=zzz", "multipart/form-data"]:
        r = client.post("/v1/datasets", content=b"--x\r\n", headers={"Content-Type": content_type})
        assert r.status_code == 400 and r.json()["status"] == 400


def test_a_spec_from_an_older_release_is_answered_as_stored(client: TestClient) -> None:
    # JobOut.spec is typed as the JobSpec union; a stored spec that no longer fits it (a
    # parameter since renamed) is still answered, as stored, never a 500
    from app.db.models import Job
    from app.db.session import session_scope

    job = client.post("/v1/jobs", json={"model": "mlp", "dataset": "moons"}).json()
    assert client.get(f"/v1/jobs/{job['id']}").json()["spec"] == job["spec"]
    with session_scope() as s:
        row = s.get(Job, job["id"])
        assert row is not None
        row.spec = {**row.spec, "params": {**row.spec["params"], "old_name": 3}}
        s.commit()
    r = client.get(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200
    assert r.json()["spec"]["params"]["old_name"] == 3
    listed = client.get("/v1/jobs").json()["items"]
    assert [j["spec"]["params"].get("old_name") for j in listed] == [3]
