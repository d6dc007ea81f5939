"""deepwalk over HTTP, trained in process: embed by node name, neighbours by cosine, the
409 for a node the graph does not have (transductive: retrain on the grown graph),
embedding.png, and the 409 of a model that embeds nothing."""

from __future__ import annotations

from typing import Any

import pytest
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


# two triangles of named nodes joined by one edge, weighted, tab separated
EDGES = b"source\ttarget\tweight\n" + b"".join(
    f"{u}\t{v}\t{w}\n".encode()
    for u, v, w in [
        ("ann", "bo", 1), ("bo", "cy", 2), ("cy", "ann", 1),
        ("dee", "ed", 1), ("ed", "flo", 1), ("flo", "dee", 3), ("cy", "dee", 0.5),
    ]
)  # fmt: skip
LABELS = b"node,label\nann,a\nbo,a\ncy,a\ndee,b\ned,b\nflo,b\n"


def upload_graph(client: TestClient, edges: bytes, labels: bytes | None = None, **form: str) -> Any:
    files = {"file": ("edges.tsv", edges)}
    if labels is not None:
        files["labels"] = ("labels.csv", labels)
    return client.post("/v1/datasets", files=files, data={"name": "g", "kind": "edges", **form})


def test_an_uploaded_edge_list_trains_and_answers_by_its_names(client: TestClient) -> None:
    r = upload_graph(client, EDGES, LABELS)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["kind"] == "edges" and ds["task"] == "node_classification"
    assert ds["shape"] == [6] and ds["classes"] == ["a", "b"]
    assert ds["features"] == ["source", "target", "weight"]
    spec = {"model": "deepwalk", "dataset": ds["id"], "params": TINY, "train": {"epochs": 2}}
    jid = trained(client, spec)
    r = client.get(f"/v1/jobs/{jid}/neighbors", params={"node": "ann", "k": 5})
    assert r.status_code == 200, r.text
    assert {n["node"] for n in r.json()["neighbors"]} == {"bo", "cy", "dee", "ed", "flo"}
    r = client.post(f"/v1/jobs/{jid}/embed", json={"nodes": ["gus"]})
    assert r.status_code == 409 and "transductive" in r.json()["detail"]
    assert client.get(f"/v1/jobs/{jid}/embedding.png").status_code == 200

    # a table upload is no graph, an edge list no table
    r = client.post("/v1/jobs", json={**spec, "model": "mlp", "params": {}})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "dataset", r.text
    table = client.post(
        "/v1/datasets",
        files={
            "file": ("t.csv", b"x,y\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(20)))
        },
        data={"name": "t", "target": "y"},
    ).json()
    r = client.post("/v1/jobs", json={**spec, "dataset": table["id"]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "dataset", r.text


@pytest.mark.parametrize(
    ("edges", "labels", "field", "words"),
    [
        (b"source,target\na,a\n", None, "file", "self-loop"),
        (b"source,target\na,b\nb,a\n", None, "file", "also on line 2"),
        (b"from,to\na,b\n", None, "file", "source, target"),
        (b"source,target,weight\na,b,-1\n", None, "file", "positive"),
        (b"source,target\na,b,c\n", None, "file", "3 fields"),
        (b"source,target\n", None, "file", "no edges"),
        (b"source,target\na,b\n", b"node,label\na,x\n", "labels", "no label"),
        (b"source,target\na,b\n", b"node,label\na,x\nb,y\nc,z\n", "labels", "in no edge"),
        (b"source,target\na,b\n", b"node,label\na,x\nb,x\n", "labels", "1 classes"),
    ],
)
def test_a_bad_edge_list_is_a_422_naming_the_field(
    client: TestClient, edges: bytes, labels: bytes | None, field: str, words: str
) -> None:
    r = upload_graph(client, edges, labels)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == field and words in r.json()["detail"], r.text


def test_a_corpus_over_the_cap_is_a_422_at_submission(client: TestClient) -> None:
    """1,001 nodes × 100 walks × 200 nodes = 20,020,000 node visits, over the 20,000,000
    cap: refused when the job is created (the node count is the upload's), not a job that
    fails in its worker; one walk fewer per node is accepted."""
    chain = b"source,target\n" + b"".join(f"{i},{i + 1}\n".encode() for i in range(1000))
    r = upload_graph(client, chain)
    assert r.status_code == 201, r.text
    params = {"walks_per_node": 100, "walk_length": 200}
    spec = {"model": "deepwalk", "dataset": r.json()["id"], "params": params}
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert error["path"] == "params", r.text
    assert "walks_per_node" in error["message"] and "walk_length" in error["message"]
    assert "20,020,000" in error["message"]
    r = client.post("/v1/jobs", json={**spec, "params": {**params, "walks_per_node": 99}})
    assert r.status_code == 201, r.text
