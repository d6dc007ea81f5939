"""An RBM's routes on jobs trained in process: seeded Gibbs samples, log-prob exact by
enumeration (bars_stripes, 16 visible units) or an AIS estimate (64 × 24), and the
leaderboard's kind and error bar for each."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from models.data import load
from tests.support.jobs import PNG_MAGIC, trained


def rbm_job(client: TestClient, dataset: str, **params: Any) -> str:
    return trained(
        client,
        {
            "model": "rbm",
            "dataset": dataset,
            "params": {"hidden": 8, "gibbs_steps": 20, **params},
            "train": {"epochs": 2, "batch_size": 64},
        },
    )


def path(r: Any) -> str:
    assert r.status_code == 422, r.text
    return str(r.json()["errors"][0]["path"])


def test_exact_rbm_routes(client: TestClient) -> None:
    job = rbm_job(client, "bars_stripes", cd_k=2)
    metrics = client.get(f"/v1/jobs/{job}").json()["metrics"]
    assert {"val_recon_error", "val_pseudo_nll", "val_nll", "test_nll", "test_log_z"} <= set(
        metrics
    )
    a = client.get(f"/v1/jobs/{job}/samples", params={"n": 4, "seed": 7}).json()
    assert len(a["samples"]) == 4 and len(a["samples"][0]) == 16
    assert all(v in (0.0, 1.0) for row in a["samples"] for v in row)
    assert client.get(f"/v1/jobs/{job}/samples", params={"n": 4, "seed": 7}).json() == a
    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 9, "format": "png"})
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)
    assert path(client.get(f"/v1/jobs/{job}/samples", params={"label": 1})) == "label"

    test_x = load("bars_stripes").x_test[:3].tolist()
    lp = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": test_x}).json()
    assert lp["exact"] is True and len(lp["log_prob"]) == 3
    assert all(v < 0 for v in lp["log_prob"])
    assert path(client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": [[0.5] * 16]})) == (
        "inputs"
    )

    board = client.get("/v1/leaderboard", params={"dataset": "bars_stripes"}).json()
    (entry,) = board["entries"]
    assert entry["kind"] == "exact" and entry["nll"] == metrics["test_nll"]


def test_ais_rbm_routes(client: TestClient) -> None:
    job = rbm_job(client, "digits_bin", hidden=24, persistent=True, ais_runs=8, ais_betas=50)
    metrics = client.get(f"/v1/jobs/{job}").json()["metrics"]
    assert metrics["test_ais_runs"] == 8 and metrics["test_nll_stderr"] > 0
    test_x = load("digits_bin").x_test[:3].tolist()
    lp = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": test_x}).json()
    assert lp["exact"] is False and lp["k"] == 8
    assert client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": test_x}).json() == lp
    board = client.get("/v1/leaderboard", params={"dataset": "digits_bin"}).json()
    (entry,) = board["entries"]
    assert entry["kind"] == "estimate" and entry["samples"] == 8
    assert entry["stderr"] == metrics["test_nll_stderr"]


def test_the_largest_sample_request_is_refused_before_it_runs(client: TestClient) -> None:
    """The worst case by count: the most samples (10,000) of a 500-hidden RBM on 64 pixels
    (32,564 parameters: at most 1e11 / 32,564 ≈ 3.1 × 10⁶ Gibbs rows) at 1,000 sweeps each
    is 10⁷ rows: a 422 naming ``n``, before the 10,000 chains run (the memory probe runs
    one and two)."""
    job = rbm_job(client, "digits_bin", hidden=500, gibbs_steps=1000, ais_runs=2, ais_betas=10)
    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 10_000})
    assert path(r) == "n" and "Gibbs rows" in r.json()["errors"][0]["message"]
