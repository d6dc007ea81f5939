"""GET /v1/leaderboard and leaderboard.png: tiny nade, made and vae jobs trained in process,
ranked by the test NLL their fits logged (the metrics endpoint's final values), with the
kind of each number, bits per dimension, parameters and training time; only the caller's
succeeded jobs of likelihood families; the 422s name dataset and metric."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db.models import Job
from app.db.session import session_scope
from app.plots import leaderboard_png
from models.data import load
from tests.support.jobs import PNG_MAGIC, built, trained

TINY: dict[str, dict[str, Any]] = {
    "nade": {"hidden": 8},
    "made": {"hidden": [16], "num_masks": 1, "inference_masks": 1},
    "vae": {"hidden": [8], "z_dim": 2, "k_eval": 4, "grad_var_samples": 0},
    "flow": {"transform": "realnvp", "layers": 2, "hidden": [8]},
    "mlp": {"hidden": [8]},
}


def job(client: TestClient, model: str, dataset: str) -> str:
    spec = {
        "model": model,
        "dataset": dataset,
        "params": TINY[model],
        "train": {"epochs": 1, "batch_size": 128},
    }
    return trained(client, spec)


def final(client: TestClient, job_id: str, name: str) -> float:
    """The metric's value at its last step, as the metrics endpoint gives it."""
    rows = client.get(f"/v1/jobs/{job_id}/metrics", params={"name": name}).json()["metrics"]
    return float(max(rows, key=lambda r: r["step"])["value"])


def test_ranks_the_callers_likelihood_jobs_by_test_nll(
    client: TestClient, other_client: TestClient
) -> None:
    jobs = {model: job(client, model, "digits_bin") for model in ("nade", "made", "vae")}
    theirs = job(other_client, "nade", "digits_bin")
    queued = client.post("/v1/jobs", json={"model": "nade", "dataset": "digits_bin"}).json()["id"]

    r = client.get("/v1/leaderboard", params={"dataset": "digits_bin"})
    assert r.status_code == 200, r.text
    board = r.json()
    assert board["dataset"] == "digits_bin" and board["metric"] == "nll"
    assert board["split"] == "test"
    entries = board["entries"]
    by_id = {e["job_id"]: e for e in entries}
    assert set(by_id) == set(jobs.values())  # not theirs, not the queued one
    assert theirs not in by_id and queued not in by_id

    nll_metric = {"nade": "test_nll", "made": "test_nll", "vae": "test_iwae_nll"}
    logged = {jobs[m]: final(client, jobs[m], nll_metric[m]) for m in jobs}
    assert [e["job_id"] for e in entries] == sorted(logged, key=logged.__getitem__)
    assert [e["rank"] for e in entries] == [1, 2, 3]
    dims = 64
    for model, jid in jobs.items():
        e = by_id[jid]
        assert e["model"] == model
        assert e["nll"] == pytest.approx(logged[jid])
        assert e["bits_per_dim"] == pytest.approx(e["nll"] / (dims * math.log(2)), rel=1e-5)
        assert e["kind"] == ("bound" if model == "vae" else "exact")
        assert e["samples"] == (4 if model == "vae" else None)
        assert e["stderr"] is None
        assert e["parameters"] == built(model, "digits_bin", **TINY[model]).parameters
        assert e["training_seconds"] > 0
        provenance = client.get(f"/v1/jobs/{jid}").json()["provenance"]  # the runner's record
        assert provenance["parameters"] == e["parameters"]
        assert provenance["train_seconds"] == e["training_seconds"]
        assert e["epochs"] == 1 and e["steps"] is None and e["finished_at"]
        assert e["params"]["hidden"] == TINY[model]["hidden"]

    bits = client.get("/v1/leaderboard", params={"dataset": "digits_bin", "metric": "bits_per_dim"})
    assert bits.status_code == 200
    assert [e["job_id"] for e in bits.json()["entries"]] == [e["job_id"] for e in entries]
    top = client.get("/v1/leaderboard", params={"dataset": "digits_bin", "limit": 1}).json()
    assert [e["job_id"] for e in top["entries"]] == [entries[0]["job_id"]]
    mine_elsewhere = other_client.get("/v1/leaderboard", params={"dataset": "digits_bin"}).json()
    assert [e["job_id"] for e in mine_elsewhere["entries"]] == [theirs]

    png = client.get("/v1/leaderboard.png", params={"dataset": "digits_bin"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_MAGIC)


def test_the_nll_is_the_served_checkpoints_not_the_last_epochs(client: TestClient) -> None:
    """An unstable nade (Adam at lr 1) whose epoch 3 beats epoch 4 on validation:
    inference serves epoch 3's checkpoint, and the leaderboard's NLL is that model's mean
    −log p over the test split as ``log-prob`` answers it, not the final weights'."""
    spec = {
        "model": "nade",
        "dataset": "digits_bin",
        "params": {"hidden": 8},
        "optimizer": {"name": "adam", "lr": 1.0},
        "train": {"epochs": 4, "batch_size": 128, "seed": 0},
    }
    jid = trained(client, spec)
    served = client.get(f"/v1/jobs/{jid}").json()["checkpoint"]
    steps = {c["id"]: c["step"] for c in client.get(f"/v1/jobs/{jid}/checkpoints").json()}
    val = client.get(f"/v1/jobs/{jid}/metrics", params={"name": "val_loss"}).json()["metrics"]
    best_epoch = min(val, key=lambda r: r["value"])["step"]
    assert steps[served] == best_epoch == 3  # the premise: the last epoch is not the best

    x_test = load("digits_bin").x_test.tolist()
    r = client.post(f"/v1/jobs/{jid}/log-prob", json={"inputs": x_test})
    assert r.status_code == 200, r.text
    served_nll = -sum(r.json()["log_prob"]) / len(x_test)
    (entry,) = client.get("/v1/leaderboard", params={"dataset": "digits_bin"}).json()["entries"]
    assert entry["job_id"] == jid
    assert entry["nll"] == pytest.approx(served_nll, rel=1e-5)
    assert final(client, jid, "test_nll") == pytest.approx(served_nll, rel=1e-5)


def test_continuous_data_lists_likelihood_families_only(client: TestClient) -> None:
    """On moons an mlp classifier (a succeeded job on the same data, with a test loss) is
    never listed; a flow's density is exact and has no bits per dimension."""
    flow, mlp = job(client, "flow", "moons"), job(client, "mlp", "moons")
    assert "test_loss" in client.get(f"/v1/jobs/{mlp}").json()["metrics"]
    entries = client.get("/v1/leaderboard", params={"dataset": "moons"}).json()["entries"]
    assert [e["job_id"] for e in entries] == [flow]
    (e,) = entries
    assert e["kind"] == "exact" and e["bits_per_dim"] is None
    assert e["nll"] == pytest.approx(final(client, flow, "test_nll"))
    r = client.get("/v1/leaderboard", params={"dataset": "moons", "metric": "bits_per_dim"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "metric"

    # a job from before the runner recorded parameters and train_seconds: counted on the
    # meta device, and timed from started_at to finished_at
    with session_scope() as s:
        row = s.get(Job, flow)
        assert row is not None
        wall = (row.finished_at - row.started_at).total_seconds()  # type: ignore[operator]
        row.provenance = {
            k: v for k, v in row.provenance.items() if k not in ("parameters", "train_seconds")
        }
    (old,) = client.get("/v1/leaderboard", params={"dataset": "moons"}).json()["entries"]
    assert old["parameters"] == e["parameters"]
    assert old["training_seconds"] == pytest.approx(wall)


def test_estimates_get_error_bars() -> None:
    """The figure draws an estimate with its error bar (an rbm job's row over HTTP:
    tests/api/test_rbm_routes.py)."""
    bars = [("nade abc123", 40.0, "exact", None), ("rbm def456", 41.0, "estimate", 0.5)]
    assert leaderboard_png(bars, title="digits_bin: test NLL", unit="nats").startswith(PNG_MAGIC)


def test_empty_board_and_bad_queries(client: TestClient) -> None:
    r = client.get("/v1/leaderboard", params={"dataset": "mnist5k_bin"})
    assert r.status_code == 200 and r.json()["entries"] == []
    png = client.get("/v1/leaderboard.png", params={"dataset": "mnist5k_bin"})
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)

    for params, field in [
        ({}, "dataset"),
        ({"dataset": "sine_gap"}, "dataset"),  # no likelihood family trains on it
        ({"dataset": "no_such_set"}, "dataset"),
        ({"dataset": "digits_bin", "metric": "accuracy"}, "metric"),
        ({"dataset": "digits_bin", "limit": 0}, "limit"),
    ]:
        for url in ("/v1/leaderboard", "/v1/leaderboard.png"):
            r = client.get(url, params=params)
            assert r.status_code == 422, (url, params, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["errors"][0]["path"] == field, r.json()
    too_many = {"dataset": "moons", "limit": 51}  # one PNG draws at most 50 bars
    assert client.get("/v1/leaderboard.png", params=too_many).status_code == 422
