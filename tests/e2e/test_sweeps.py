"""Sweeps end to end: real uvicorn, a real Celery worker, the reconciler driving each
sweep forward as its children finish."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.stack import Stack, wait_until

pytestmark = pytest.mark.e2e

BASE: dict[str, Any] = {
    "model": "mlp",
    "dataset": "moons",
    "params": {"hidden": [8]},
    "train": {"epochs": 2, "device": "cpu"},
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _post(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    r = stack.client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _sweep(stack: Stack, sweep_id: str) -> dict[str, Any]:
    r = stack.client.get(f"/v1/sweeps/{sweep_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _until_over(stack: Stack, sweep_id: str, timeout: float = 240) -> dict[str, Any]:
    return dict(
        wait_until(
            lambda: (s := _sweep(stack, sweep_id))["status"] != "running" and s,
            timeout,
            f"sweep {sweep_id} to finish",
            0.5,
        )
    )


def test_a_grid_sweep_of_four_children_reaches_its_table_best_first(stack: Stack) -> None:
    body = {
        "spec": BASE,
        "grid": {"optimizer.lr": [0.003, 0.03], "params.hidden": [[4], [16]]},
        "parallel": 2,
        "metric": "val_loss",
        "goal": "min",
        "name": "lr-by-width",
    }
    sweep = _post(stack, body)
    assert len(sweep["children"]) == 2  # parallel 2: the others wait for a slot
    done = _until_over(stack, sweep["id"])
    assert done["status"] == "finished", done
    assert done["counts"] == {"succeeded": 4}, done["children"]
    rows = done["children"]
    assert sorted(c["number"] for c in rows) == [0, 1, 2, 3]
    metrics = [c["metric"] for c in rows]
    assert all(m is not None for m in metrics) and metrics == sorted(metrics)
    assert done["best"] == rows[0]
    seen = {(c["values"]["optimizer.lr"], tuple(c["values"]["params.hidden"])) for c in rows}
    assert seen == {(0.003, (4,)), (0.003, (16,)), (0.03, (4,)), (0.03, (16,))}
    best_job = stack.job(rows[0]["job_id"])
    assert best_job["metrics"]["val_loss"] == pytest.approx(rows[0]["metric"])
    assert best_job["name"].startswith("lr-by-width #")

    png = stack.client.get(f"/v1/sweeps/{sweep['id']}/plot.png")
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
    listed = stack.client.get("/v1/sweeps", params={"status": "finished"}).json()["items"]
    assert sweep["id"] in {s["id"] for s in listed}


def test_a_tpe_sweep_is_driven_by_finished_children_across_an_api_restart(stack: Stack) -> None:
    body = {
        "spec": BASE,
        "grid": {"optimizer.lr": {"low": 0.001, "high": 0.3, "log": True}},
        "method": "tpe",
        "trials": 3,
        "parallel": 1,
        "seed": 5,
    }
    sweep = _post(stack, body)
    assert len(sweep["children"]) == 1
    wait_until(
        lambda: len(_sweep(stack, sweep["id"])["children"]) >= 2,
        180,
        "the second trial, asked once the first finished",
        0.5,
    )
    stack.restart_api()  # nothing of the study lives only in the API's memory
    done = _until_over(stack, sweep["id"])
    assert done["status"] == "finished" and done["counts"] == {"succeeded": 3}, done
    lrs = [c["values"]["optimizer.lr"] for c in done["children"]]
    assert len(set(lrs)) == 3 and all(0.001 <= lr <= 0.3 for lr in lrs)


def test_cancel_stops_the_children_and_the_trials(stack: Stack) -> None:
    long = {**BASE, "train": {"epochs": 2000, "device": "cpu"}}
    body = {"spec": long, "grid": {"train.seed": [0, 1, 2, 3]}, "parallel": 2}
    sweep = _post(stack, body)
    first = sweep["children"][0]["job_id"]
    stack.wait_status(first, {"running"}, timeout=120)
    r = stack.client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "cancelled"
    for child in sweep["children"]:
        stack.wait_status(child["job_id"], {"cancelled"}, timeout=60)
    after = _sweep(stack, sweep["id"])
    assert after["status"] == "cancelled" and len(after["children"]) == 2  # no new trials
    assert after["counts"] == {"cancelled": 2}


def test_sweeps_are_their_owners_and_a_bad_child_is_a_422(stack: Stack) -> None:
    sweep = _post(stack, {"spec": BASE, "grid": {"train.seed": [0]}, "parallel": 1})
    key = stack.client.post("/v1/keys", json={"name": "sweep neighbour"}).json()["key"]
    with httpx.Client(
        base_url=stack.url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as other:
        assert other.get(f"/v1/sweeps/{sweep['id']}").status_code == 404
        assert other.get(f"/v1/sweeps/{sweep['id']}/plot.png").status_code == 404
        assert other.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 404
        assert sweep["id"] not in {s["id"] for s in other.get("/v1/sweeps").json()["items"]}
    r = stack.client.post("/v1/sweeps", json={"spec": BASE, "grid": {"optimizer.lr": [0.01, -0.5]}})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["path"] for e in r.json()["errors"]] == ["grid.optimizer.lr"]
    _until_over(stack, sweep["id"])
