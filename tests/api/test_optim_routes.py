"""The optimizer lab over HTTP: jobs trained in process, their trajectory as JSON and as a
contour picture, the bound on points, owner isolation, and the refusals (newton's Hessian
over its cap, newton for a family whose loop cannot give it the loss, epochs for a
family that counts steps, a start of the wrong length)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import trajectories
from models.optim import MAX_NEWTON_PARAMETERS
from tests.support.jobs import PNG_MAGIC, SPEC, trained


def lab_job(client: TestClient, dataset: str = "rosenbrock", steps: int = 30, **spec: Any) -> str:
    return trained(
        client,
        {
            "model": "optim",
            "dataset": dataset,
            "optimizer": {"name": "adam", "lr": 0.05},
            "train": {"steps": steps},
            **spec,
        },
    )


def test_the_trajectory_from_the_start_to_the_last_step(client: TestClient) -> None:
    job = lab_job(client)
    body = client.get(f"/v1/jobs/{job}/trajectory").json()
    assert body["landscape"] == "rosenbrock" and body["dim"] == 2
    assert body["optimizer"]["name"] == "adam" and body["minimum"] == 0.0
    assert body["steps"] == list(range(31)) and not body["subsampled"]
    assert body["path"][0] == [-1.5, 2.0] and body["loss"][0] == pytest.approx(12.5)
    assert body["grad_norm"][0] is None and body["step_norm"][0] is None
    # Adam's first step moves each coordinate by lr (bias corrected)
    assert body["step_norm"][1] == pytest.approx(0.05 * 2**0.5, rel=1e-6)
    assert body["loss"][-1] < body["loss"][0]
    metrics = client.get(f"/v1/jobs/{job}").json()["metrics"]
    assert metrics["loss"] == body["loss"][-1] and metrics["w0"] == body["path"][-1][0]

    r = client.get(f"/v1/jobs/{job}/trajectory.png")
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)


def test_newton_in_one_step_on_an_ill_conditioned_quadratic(client: TestClient) -> None:
    job = lab_job(
        client,
        "quadratic",
        steps=3,
        params={"dim": 10, "condition_number": 1e6},
        optimizer={"name": "newton", "lr": 1.0},
    )
    body = client.get(f"/v1/jobs/{job}/trajectory").json()
    assert body["dim"] == 10 and body["converged_step"] == 1
    assert body["loss"][1] < 1e-20 and body["path"][0] == [1.5, 1.0]
    r = client.get(f"/v1/jobs/{job}/trajectory.png")
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)


def test_points_are_bounded(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    job = lab_job(client, steps=20)
    monkeypatch.setattr(trajectories, "MAX_POINTS", 5)
    body = client.get(f"/v1/jobs/{job}/trajectory").json()
    # five points: the start and four logged steps spread evenly, the first and last kept
    assert body["subsampled"] and body["steps"] == [0, 1, 7, 14, 20]
    assert len(body["path"]) == len(body["loss"]) == 5


def test_a_queued_job_has_its_start_and_another_owner_sees_nothing(
    client: TestClient, other_client: TestClient
) -> None:
    r = client.post(
        "/v1/jobs",
        json={"model": "optim", "dataset": "saddle", "params": {"start": [0.5, 0.25]}},
    )
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    assert r.json()["spec"]["train"]["steps"] == 200  # the lab counts steps
    body = client.get(f"/v1/jobs/{job}/trajectory").json()
    assert body["steps"] == [0] and body["path"] == [[0.5, 0.25]]
    assert other_client.get(f"/v1/jobs/{job}/trajectory").status_code == 404
    assert other_client.get(f"/v1/jobs/{job}/trajectory.png").status_code == 404


def test_refusals(client: TestClient) -> None:
    mlp = trained(client, SPEC)
    r = client.get(f"/v1/jobs/{mlp}/trajectory")
    assert r.status_code == 409 and "trajectory" in r.json()["detail"]

    def post(spec: dict[str, Any]) -> Any:
        return client.post("/v1/jobs", json=spec)

    # newton's Hessian over the cap: 422 on optimizer.name, its size in the message
    big = post(
        {
            "model": "mlp",
            "dataset": "digits",
            "params": {"hidden": [64]},
            "optimizer": {"name": "newton"},
        }
    )
    assert big.status_code == 422
    (error,) = big.json()["errors"]
    n = 64 * 64 + 64 + 64 * 10 + 10  # digits: 64 inputs, 10 classes
    assert (
        error["path"] == "optimizer.name"
        and f"{n:,} x {n:,} = {n * n:,} entries" in error["message"]
    )
    assert f"{MAX_NEWTON_PARAMETERS:,} parameters" in error["message"]
    small = post(
        {
            "model": "mlp",
            "dataset": "moons",
            "params": {"hidden": [4]},
            "optimizer": {"name": "newton"},
        }
    )
    assert small.status_code == 201, small.text
    quad = post(
        {
            "model": "optim",
            "dataset": "quadratic",
            "params": {"dim": 1000},
            "optimizer": {"name": "newton"},
        }
    )
    assert quad.status_code == 201, quad.text  # 1,000 parameters: under the cap
    # a family whose loop gives the optimizer no closure
    gan = post({"model": "gan", "dataset": "moons", "optimizer": {"name": "newton"}})
    assert gan.status_code == 422 and gan.json()["errors"][0]["path"] == "optimizer.name"
    assert "optim" in gan.json()["detail"] and "mlp" in gan.json()["detail"]
    # the lab counts steps; a start must fit the landscape; dim is bounded
    epochs = post({"model": "optim", "dataset": "beale", "train": {"epochs": 3}})
    assert epochs.status_code == 422 and epochs.json()["errors"][0]["path"] == "train.epochs"
    start = post({"model": "optim", "dataset": "beale", "params": {"start": [1, 2, 3]}})
    assert start.status_code == 422 and "start has 3 coordinates" in start.json()["detail"]
    wide = post({"model": "optim", "dataset": "quadratic", "params": {"dim": 1001}})
    assert wide.status_code == 422 and "dim" in wide.json()["errors"][0]["path"]
    wrong = post({"model": "optim", "dataset": "moons"})
    assert wrong.status_code == 422
