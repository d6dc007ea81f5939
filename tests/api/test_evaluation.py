"""Uncertainty plot, calibration and active learning on jobs trained in process (real
SQLite/PostgreSQL, the runner without a worker)."""

from __future__ import annotations

import statistics

from fastapi.testclient import TestClient

from tests.support.jobs import PNG_MAGIC, trained


def sine_gap_job(client: TestClient) -> str:
    return trained(
        client,
        {
            "model": "mc_dropout",
            "dataset": "sine_gap",
            "params": {"hidden": [64, 64], "mc_samples_eval": 5},
            "optimizer": {"name": "adam", "lr": 0.003},
            "train": {"epochs": 60, "batch_size": 64},
        },
    )


def digits_job(client: TestClient) -> str:
    return trained(
        client,
        {
            "model": "mc_dropout",
            "dataset": "digits",
            "params": {"hidden": [32], "dropout": 0.3, "mc_samples_eval": 5},
            "train": {"epochs": 3, "batch_size": 64},
        },
    )


def test_regression_plot_calibration_and_variance_acquisition(
    client: TestClient, other_client: TestClient
) -> None:
    job = sine_gap_job(client)
    r = client.get(f"/v1/jobs/{job}/plot.png", params={"points": 60, "mc_samples": 30})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content.startswith(PNG_MAGIC)

    cal = client.get(f"/v1/jobs/{job}/calibration", params={"mc_samples": 30}).json()
    assert cal["task"] == "regression" and cal["n_test"] > 0 and cal["bins"] is None
    assert set(cal["metrics"]) == {"nll", "rmse", "coverage_95", "width_95"}
    assert [p["level"] for p in cal["curve"]] == sorted(p["level"] for p in cal["curve"])
    r = client.get(f"/v1/jobs/{job}/reliability.png", params={"mc_samples": 30})
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)

    gap = [[-0.5], [-0.25], [0.0], [0.25], [0.5]]
    seen = [[-2.2], [-2.0], [-1.8], [1.8], [2.0], [2.2]]
    pool = seen[:3] + gap + seen[3:]
    body = {"pool": pool, "k": 5, "strategy": "variance", "mc_samples": 200}
    out = client.post(f"/v1/jobs/{job}/acquire", json=body).json()
    assert out["strategy"] == "variance" and out["mc_samples"] == 200
    scores = [item["score"] for item in out["items"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5
    assert {tuple(item["input"]) for item in out["items"]} == {tuple(x) for x in gap}
    assert all(pool[item["index"]] == item["input"] for item in out["items"])
    default = client.post(f"/v1/jobs/{job}/acquire", json={"pool": pool, "k": 1}).json()
    assert default["strategy"] == "variance"

    # validation
    r = client.post(f"/v1/jobs/{job}/acquire", json={"pool": pool, "strategy": "bald"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "strategy"
    r = client.post(f"/v1/jobs/{job}/acquire", json={"pool": [[0.0], [1.0, 2.0]], "k": 1})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "pool[1]"
    r = client.post(f"/v1/jobs/{job}/acquire", json={"pool": [[0.0]], "k": 2})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "k"
    r = client.post(f"/v1/jobs/{job}/acquire", json={"pool": [[0.0]], "k": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "k"
    r = client.post(f"/v1/jobs/{job}/acquire", json={"pool": [[0.0]], "strategy": "random"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "strategy"
    r = client.post(f"/v1/jobs/{job}/acquire", json={"pool": [], "k": 1})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "pool"
    r = client.post(f"/v1/jobs/{job}/acquire", json={"pool": [[0.0]], "k": 1, "mc_samples": 10**6})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "mc_samples"
    r = client.get(f"/v1/jobs/{job}/plot.png", params={"points": 5})
    assert r.status_code == 422

    # another owner sees nothing
    for r in (
        other_client.get(f"/v1/jobs/{job}/plot.png"),
        other_client.get(f"/v1/jobs/{job}/reliability.png"),
        other_client.get(f"/v1/jobs/{job}/calibration"),
        other_client.post(f"/v1/jobs/{job}/acquire", json={"pool": pool}),
    ):
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"


def test_classification_reliability_and_bald(client: TestClient) -> None:
    job = digits_job(client)
    cal = client.get(f"/v1/jobs/{job}/calibration", params={"mc_samples": 20}).json()
    assert set(cal["metrics"]) == {"nll", "accuracy", "brier", "ece"}
    assert len(cal["bins"]) == 15 and sum(b["count"] for b in cal["bins"]) == cal["n_test"]
    assert cal["curve"] is None
    r = client.get(f"/v1/jobs/{job}/reliability.png", params={"mc_samples": 20, "bins": 10})
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)

    r = client.get(f"/v1/jobs/{job}/plot.png")
    assert r.status_code == 409 and "1-D regression" in r.json()["detail"]

    from models.data import load

    pool = load("digits").x_test[:40].tolist()
    pool[7] = [16.0 if i % 2 else 0.0 for i in range(64)]  # an odd, out-of-distribution image
    body = {"pool": pool, "k": 8, "strategy": "bald", "mc_samples": 200}
    out = client.post(f"/v1/jobs/{job}/acquire", json=body).json()
    scores = [item["score"] for item in out["items"]]
    assert len(scores) == 8 and scores == sorted(scores, reverse=True)
    predicted = client.post(
        f"/v1/jobs/{job}/predict", json={"inputs": pool, "mc_samples": 200}
    ).json()
    assert out["items"][0]["score"] > statistics.median(predicted["mutual_information"])

    out = client.post(
        f"/v1/jobs/{job}/acquire", json={**body, "strategy": "max_entropy", "k": 40}
    ).json()
    scores = [item["score"] for item in out["items"]]
    assert scores == sorted(scores, reverse=True)
    assert sorted(item["index"] for item in out["items"]) == list(range(40))
    r = client.post(f"/v1/jobs/{job}/acquire", json={**body, "strategy": "variance"})
    assert r.status_code == 422 and "regression" in r.json()["detail"]


def test_ties_are_broken_by_pool_index(client: TestClient) -> None:
    """A deterministic mlp has zero mutual information everywhere: the pool order stands."""
    job = trained(
        client,
        {"model": "mlp", "dataset": "moons", "params": {"hidden": [8]}, "train": {"epochs": 1}},
    )
    pool = [[0.1 * i, 0.0] for i in range(6)]
    out = client.post(f"/v1/jobs/{job}/acquire", json={"pool": pool, "k": 4}).json()
    assert [item["index"] for item in out["items"]] == [0, 1, 2, 3]
    assert {item["score"] for item in out["items"]} == {0.0}
