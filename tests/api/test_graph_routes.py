"""deepwalk over HTTP, trained in process: embed by node name, neighbours by cosine, the
409 for a node the graph does not have (transductive: retrain on the grown graph),
embedding.png, and the 409 of a model that embeds nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.jobs import trained

TINY = {"walks_per_node": 2, "walk_length": 8, "window": 2, "dim": 8}


def deepwalk_job(client: TestClient, dataset: str = "les_miserables") -> str:
    spec = {"model": "deepwalk", "dataset": dataset, "params": TINY, "train": {"epochs": 2}}
    return trained(client, spec)


def test_embed_neighbors_and_the_picture(client: TestClient) -> None:
    jid = deepwalk_job(client)
    r = client.post(f"/v1/jobs/{jid}/embed", json={"nodes": ["Valjean", "Javert"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["nodes"] == ["Valjean", "Javert"] and body["job_id"] == jid
    assert len(body["vectors"]) == 2 and all(len(v) == 8 for v in body["vectors"])

    r = client.get(f"/v1/jobs/{jid}/neighbors", params={"node": "Valjean", "k": 4})
    assert r.status_code == 200, r.text
    found = r.json()["neighbors"]
    assert len(found) == 4 and "Valjean" not in [n["node"] for n in found]
    sims = [n["similarity"] for n in found]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1 + 1e-6 for s in sims)

    png = client.get(f"/v1/jobs/{jid}/embedding.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.headers["content-type"] == "image/png"


def test_an_unknown_node_is_a_409_saying_how_to_retrain(client: TestClient) -> None:
    jid = deepwalk_job(client, "karate")
    assert client.post(f"/v1/jobs/{jid}/embed", json={"nodes": [0, "33"]}).status_code == 200
    r = client.post(f"/v1/jobs/{jid}/embed", json={"nodes": [0, "34"]})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "'34'" in detail and "transductive" in detail and f"/v1/jobs/{jid}/clone" in detail
    r = client.get(f"/v1/jobs/{jid}/neighbors", params={"node": "Napoleon"})
    assert r.status_code == 409 and "transductive" in r.json()["detail"]


def test_bad_requests_are_422s_naming_the_field(client: TestClient) -> None:
    jid = deepwalk_job(client, "karate")
    r = client.get(f"/v1/jobs/{jid}/neighbors", params={"node": "1", "k": 101})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "k", r.text
    r = client.post(f"/v1/jobs/{jid}/embed", json={"nodes": []})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "nodes", r.text
    r = client.post(f"/v1/jobs/{jid}/embed", json={"nodes": ["1"] * 10_001})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "nodes", r.text


def test_a_model_that_cannot_embed_is_a_409(client: TestClient) -> None:
    jid = trained(
        client,
        {"model": "mlp", "dataset": "moons", "params": {"hidden": [4]}, "train": {"epochs": 1}},
    )
    r = client.post(f"/v1/jobs/{jid}/embed", json={"nodes": ["0"]})
    assert r.status_code == 409 and "embed" in r.text
    assert client.get(f"/v1/jobs/{jid}/neighbors", params={"node": "0"}).status_code == 409
    assert client.get(f"/v1/jobs/{jid}/embedding.png").status_code == 409
