"""Jobs over HTTP, in process, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.support.jobs import SPEC


def test_create_get_list(client: TestClient) -> None:
    r = client.post("/v1/jobs", json=SPEC)
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["spec"]["train"]["batch_size"] > 0  # defaults filled in
    assert job["spec"]["optimizer"]["name"] == "adam"
    assert job["provenance"]["seed"] == 0
    assert client.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
    listed = client.get("/v1/jobs", params={"status": "queued"}).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]
    assert client.get("/v1/jobs", params={"model": "mc_dropout"}).json()["items"] == []


def test_epochs_default_from_family(client: TestClient) -> None:
    r = client.post("/v1/jobs", json={"model": "mlp", "dataset": "moons"})
    assert r.status_code == 201
    train = r.json()["spec"]["train"]
    assert train["epochs"] >= 1 and train["steps"] is None


def test_cursor_pagination(client: TestClient) -> None:
    ids = [client.post("/v1/jobs", json=SPEC).json()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    assert client.get("/v1/jobs", params={"cursor": "garbage!"}).status_code == 422


def test_idempotency_key(client: TestClient) -> None:
    h = {"Idempotency-Key": "abc-123"}
    first = client.post("/v1/jobs", json=SPEC, headers=h)
    again = client.post("/v1/jobs", json=SPEC, headers=h)
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert first.json()["id"] == again.json()["id"]
    assert len(client.get("/v1/jobs").json()["items"]) == 1
    other = client.post("/v1/jobs", json={**SPEC, "train": {"epochs": 3}}, headers=h)
    assert other.status_code == 409
    assert other.json()["errors"][0]["path"] == "Idempotency-Key"


def test_validation_names_the_field(client: TestClient) -> None:
    cases = [
        ({**SPEC, "model": "nope"}, "model"),
        ({**SPEC, "dataset": "karate"}, "dataset"),
        ({**SPEC, "params": {"hidden": [8], "bogus": 1}}, "params.bogus"),
        ({**SPEC, "params": {"hidden": [0]}}, "params.hidden[0]"),
        ({**SPEC, "params": {"activation": "swishy"}}, "params.activation"),
        ({**SPEC, "optimizer": {"name": "adam", "lr": -1}}, "optimizer.lr"),
        ({**SPEC, "train": {"epochs": 2, "steps": 3}}, "train"),
        ({**SPEC, "train": {"epochs": 0}}, "train.epochs"),
        ({**SPEC, "extra": 1}, "extra"),
        # smaller minibatches than the model can train on (BatchNorm: 2; PacGAN: a pack)
        ({**SPEC, "params": {"batchnorm": True}, "train": {"batch_size": 1}}, "train.batch_size"),
        (
            {
                "model": "gan",
                "dataset": "rings8",
                "params": {"pack": 4},
                "train": {"batch_size": 3},
            },
            "train.batch_size",
        ),
        ({"model": "flow", "dataset": "moons", "train": {"batch_size": 1}}, "train.batch_size"),
    ]
    for body, path in cases:
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["status"] == 422 and problem["title"]
        assert path in [e["path"] for e in problem["errors"]], (path, problem)


def test_smallest_batches_the_models_take_are_accepted(client: TestClient) -> None:
    for body in (
        {**SPEC, "train": {"epochs": 1, "batch_size": 1}},  # no batch statistics: 1 is fine
        {**SPEC, "params": {"batchnorm": True}, "train": {"epochs": 1, "batch_size": 2}},
        {"model": "gan", "dataset": "rings8", "params": {"pack": 4}, "train": {"batch_size": 4}},
        {
            "model": "flow",
            "dataset": "moons",
            "params": {"batchnorm": False},
            "train": {"batch_size": 1},
        },
    ):
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 201, (body, r.text)


def test_malformed_bodies_are_4xx(client: TestClient) -> None:
    assert (
        client.post(
            "/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
        ).status_code
        == 422
    )
    assert client.post("/v1/jobs", json=[1, 2]).status_code == 422
    assert client.post("/v1/jobs", json=None).status_code == 422
    big = b'{"model": "mlp", "name": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    r = client.post("/v1/jobs", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_cancel_queued_and_delete(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=SPEC).json()
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 409  # not finished
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_resume_and_clone(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=SPEC).json()
    client.post(f"/v1/jobs/{job['id']}/cancel")
    r = client.post(f"/v1/jobs/{job['id']}/resume", json={"epochs": 5})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued" and r.json()["spec"]["train"]["epochs"] == 5
    assert client.post(f"/v1/jobs/{job['id']}/resume").status_code == 409
    clone = client.post(f"/v1/jobs/{job['id']}/clone", json={"params": {"hidden": [4, 4]}})
    assert clone.status_code == 201, clone.text
    c = clone.json()
    assert c["id"] != job["id"] and c["spec"]["params"]["hidden"] == [4, 4]
    assert c["provenance"]["cloned_from"] == job["id"]
    bad = client.post(f"/v1/jobs/{job['id']}/clone", json={"params": {"hidden": [-1]}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"].startswith("params.hidden")


def test_owner_isolation(client: TestClient, other_client: TestClient) -> None:
    job = client.post("/v1/jobs", json=SPEC).json()
    for method, path in [
        ("get", f"/v1/jobs/{job['id']}"),
        ("post", f"/v1/jobs/{job['id']}/cancel"),
        ("delete", f"/v1/jobs/{job['id']}"),
        ("get", f"/v1/jobs/{job['id']}/metrics"),
        ("get", f"/v1/jobs/{job['id']}/checkpoints"),
        ("get", f"/v1/jobs/{job['id']}/events"),
        ("post", f"/v1/jobs/{job['id']}/clone"),
        ("post", f"/v1/jobs/{job['id']}/resume"),
    ]:
        assert getattr(other_client, method)(path).status_code == 404, path
    assert other_client.get("/v1/jobs").json()["items"] == []
    r = other_client.post("/v1/jobs/x/predict", json={"inputs": [[0.0]]})
    assert r.status_code == 404


def test_auth_required(client: TestClient) -> None:
    anon = TestClient(client.app, raise_server_exceptions=False)
    r = anon.get("/v1/jobs")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["status"] == 401
    anon.headers["Authorization"] = "Bearer wrong"
    assert anon.get("/v1/models").status_code == 401
    assert anon.get("/healthz").status_code == 200


def test_queues_route_by_device(client: TestClient) -> None:
    """Each job lands in exactly the queue of its device: cpu, gpu (cuda) or auto."""
    import json

    import redis

    from app.config import get_settings

    r = redis.Redis.from_url(get_settings().resolved_broker_url)
    for device, queue in (("cpu", "cpu"), ("cuda", "gpu"), ("auto", "auto")):
        r.flushdb()
        spec = {**SPEC, "train": {"epochs": 1, "device": device}}
        job = client.post("/v1/jobs", json=spec).json()
        lengths = {q: r.llen(q) for q in ("cpu", "gpu", "auto")}
        assert lengths == {q: int(q == queue) for q in lengths}, (device, lengths)
        message = json.loads(r.lindex(queue, 0))
        assert message["headers"]["task"] == "train_job"
        assert message["headers"]["id"].startswith(job["id"])
        assert message["content-type"] == "application/json"
