"""An RBM's routes on jobs trained in process: seeded Gibbs samples, log-prob exact by
enumeration (bars_stripes, 16 visible units) or an AIS estimate (64 × 24) with the log Z
the served checkpoint keeps from the final test, and the leaderboard's kind and error bar
for each; a log-prob whose AIS would be over the request bound refused (409)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.api.generative import _log_prob_bounded
from app.problems import Problem
from models.checkpoint import load_state
from models.data import load
from models.energy import rbm_free_energy
from tests.support.jobs import PNG_MAGIC, built, trained


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
    assert lp["kind"] == "exact" and lp["stderr"] is None
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
    # an estimate, with log Z's error bar: the one the final test logged
    assert lp["kind"] == "estimate" and lp["stderr"] == metrics["test_nll_stderr"]
    assert client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": test_x}).json() == lp
    # the served checkpoint carries the final test's log Z: the answer is −F(x) − test_log_z
    served = client.get(f"/v1/jobs/{job}").json()["checkpoint"]
    assert lp["checkpoint"] == served
    state = load_state(client.get(f"/v1/jobs/{job}/checkpoints/{served}").content)["model"]
    assert float(state["log_z"]) == metrics["test_log_z"]
    assert float(state["log_z_stderr"]) == metrics["test_nll_stderr"]
    x = torch.tensor(test_x).flatten(1)
    free = rbm_free_energy(x, state["W"], state["b"], state["c"]).double()
    want = (-free - metrics["test_log_z"]).float().double()
    assert torch.tensor(lp["log_prob"], dtype=torch.float64).allclose(want, rtol=0, atol=1e-9)
    board = client.get("/v1/leaderboard", params={"dataset": "digits_bin"}).json()
    (entry,) = board["entries"]
    assert entry["kind"] == "estimate" and entry["samples"] == 8
    assert entry["stderr"] == metrics["test_nll_stderr"]
    png = client.get("/v1/leaderboard.png", params={"dataset": "digits_bin"})
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)  # with its error bar


def test_the_largest_sample_request_is_refused_before_it_runs(client: TestClient) -> None:
    """The worst case by count: the most samples (10,000) of a 500-hidden RBM on 64 pixels
    (32,564 parameters: at most 1e11 / 32,564 ≈ 3.1 × 10⁶ Gibbs rows) at 1,000 sweeps each
    is 10⁷ rows: a 422 naming ``n``, before the 10,000 chains run (the memory probe runs
    one and two)."""
    job = rbm_job(client, "digits_bin", hidden=500, gibbs_steps=1000, ais_runs=2, ais_betas=10)
    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 10_000})
    assert path(r) == "n" and "Gibbs rows" in r.json()["errors"][0]["message"]


def test_a_log_prob_needing_an_ais_over_the_request_bound_is_a_409() -> None:
    """The worst case: the widest RBM (4,096 hidden) on 784 pixels with the largest AIS a
    build allows (100 runs x 15,000 betas, 9.6e12 multiply-adds: minutes) and no stored
    log Z (a checkpoint before its final test): a 409 saying why, before any annealing."""
    item = built("rbm", "mnist5k_bin", hidden=4096, ais_betas=15_000)
    x = load("mnist5k_bin").x_test[:2]
    start = time.process_time()
    with pytest.raises(Problem) as exc:
        _log_prob_bounded(item, x, None, 1, ["k", "inputs"])
    assert exc.value.status == 409 and "no log Z yet" in str(exc.value.detail)
    assert time.process_time() - start < 2.0
