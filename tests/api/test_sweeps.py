"""Sweeps in process: the grid's expansion and checks, the routes, and a TPE sweep driven to
its end with the runner called in place of a worker and ``advance`` in place of the
reconciler's pass."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.problems import Problem
from app.sweeps import (
    Axis,
    child_spec,
    combinations,
    grid_size,
    parse_grid,
    random_values,
)
from tests.support.jobs import PNG_MAGIC

BASE: dict[str, Any] = {
    "model": "mlp",
    "dataset": "moons",
    "params": {"hidden": [8]},
    "train": {"epochs": 1},
}


def sweep_body(**kwargs: Any) -> dict[str, Any]:
    return {"spec": BASE, "grid": {"optimizer.lr": [0.01, 0.1]}, **kwargs}


# --- the grid ------------------------------------------------------------------------------


def test_a_grid_expands_in_order_the_last_key_fastest() -> None:
    axes = parse_grid({"optimizer.lr": [0.1, 0.01], "params.hidden": [[8], [16, 16]]}, "grid")
    assert grid_size(axes) == 4
    assert list(combinations(axes)) == [
        {"optimizer.lr": 0.1, "params.hidden": [8]},
        {"optimizer.lr": 0.1, "params.hidden": [16, 16]},
        {"optimizer.lr": 0.01, "params.hidden": [8]},
        {"optimizer.lr": 0.01, "params.hidden": [16, 16]},
    ]


def test_a_child_spec_sets_dotted_paths_and_leaves_the_base_alone() -> None:
    base = {"model": "mlp", "dataset": "moons", "params": {"hidden": [8]}}
    spec = child_spec(base, {"params.hidden": [4, 4], "optimizer.lr": 0.5, "dataset": "xor"})
    assert spec == {
        "model": "mlp",
        "dataset": "xor",
        "params": {"hidden": [4, 4]},
        "optimizer": {"lr": 0.5},
    }
    assert base["params"] == {"hidden": [8]}


@pytest.mark.parametrize(
    ("grid", "method", "path"),
    [
        ({}, "grid", "grid"),
        ({"model": ["cnn"]}, "grid", "grid.model"),
        ({"name": ["x"]}, "grid", "grid.name"),
        ({"params..hidden": [[8]]}, "grid", "grid.params..hidden"),
        ({"dataset.x": ["moons"]}, "grid", "grid.dataset.x"),
        ({"optimizer.lr": []}, "grid", "grid.optimizer.lr"),
        ({"optimizer.lr": {"low": 0.1, "high": 1.0}}, "grid", "grid.optimizer.lr"),
        ({"optimizer.lr": {"low": 1.0, "high": 0.1}}, "tpe", "grid.optimizer.lr"),
        ({"optimizer.lr": {"low": 0.0, "high": 0.1, "log": True}}, "random", "grid.optimizer.lr"),
    ],
)
def test_a_bad_grid_is_a_422_naming_its_key(grid: dict[str, Any], method: str, path: str) -> None:
    with pytest.raises(Problem) as caught:
        parse_grid(grid, method)
    assert caught.value.status == 422
    assert caught.value.extra["errors"][0]["path"] == path


def test_random_values_come_from_the_seed_and_number_alone_and_stay_in_range() -> None:
    axes = [
        Axis("optimizer.lr", low=1e-4, high=1e-1, log=True),
        Axis("train.batch_size", low=8, high=64),
        Axis("params.hidden", values=([8], [16])),
    ]
    draws = [random_values(axes, 7, n) for n in range(50)]
    assert draws == [random_values(axes, 7, n) for n in range(50)]
    assert draws != [random_values(axes, 8, n) for n in range(50)]
    assert all(1e-4 <= d["optimizer.lr"] <= 1e-1 for d in draws)
    assert all(isinstance(d["train.batch_size"], int) for d in draws)
    assert all(8 <= d["train.batch_size"] <= 64 for d in draws)
    assert {tuple(d["params.hidden"]) for d in draws} == {(8,), (16,)}


# --- the routes ----------------------------------------------------------------------------


def _jobs(client: TestClient) -> list[dict[str, Any]]:
    return list(client.get("/v1/jobs").json()["items"])


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (sweep_body(grid={"optimizer.lr": [0.1, -1.0]}), "grid.optimizer.lr"),
        (sweep_body(grid={"optimizer.lrr": [0.1]}), "grid.optimizer.lrr"),
        (sweep_body(grid={"params.hidden": [[8], [100_000, 100_000]]}), "grid.params.hidden"),
        (sweep_body(grid={"dataset": ["moons", "nope"]}), "grid.dataset"),
        (sweep_body(grid={"optimizer.lr": [0.1] * 9, "train.seed": list(range(8))}), "grid"),
        (sweep_body(trials=3), "trials"),
        (sweep_body(trials=65, method="random"), "trials"),
        (sweep_body(method="bayes"), "method"),
        (sweep_body(goal="down"), "goal"),
        (sweep_body(parallel=0), "parallel"),
    ],
)
def test_a_sweep_a_child_of_which_would_be_refused_is_a_422_and_creates_nothing(
    client: TestClient, body: dict[str, Any], path: str
) -> None:
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422, r.text
    assert path in {e["path"] for e in r.json()["errors"]}, r.json()
    assert client.get("/v1/sweeps").json()["items"] == []
    assert _jobs(client) == []


def test_a_grid_may_replace_the_base_field_that_would_refuse_it(client: TestClient) -> None:
    huge = {**BASE, "params": {"hidden": [4096] * 4}}  # 50.3M parameters: over the limit
    body = sweep_body(spec=huge, grid={"params.hidden": [[4], [8]]}, parallel=1)
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    body = sweep_body(spec=huge, grid={"optimizer.lr": [0.1]})
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422
    assert [(e["path"], e["type"]) for e in r.json()["errors"]] == [("spec.params", "too_large")]


def test_a_bad_base_spec_is_a_422_naming_spec(client: TestClient) -> None:
    r = client.post("/v1/sweeps", json=sweep_body(spec={**BASE, "train": {"epochs": 0}}))
    assert r.status_code == 422
    assert [e["path"] for e in r.json()["errors"]] == ["spec.train.epochs"], r.json()


def test_a_grid_sweep_creates_parallel_children_then_cancels_them(client: TestClient) -> None:
    body = sweep_body(grid={"optimizer.lr": [0.01, 0.1], "params.hidden": [[4], [8]]}, parallel=3)
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert r.headers["location"] == f"/v1/sweeps/{sweep['id']}"
    assert sweep["status"] == "running" and sweep["trials"] == 4
    assert [c["number"] for c in sweep["children"]] == [0, 1, 2]
    assert sweep["children"][1]["values"] == {"optimizer.lr": 0.01, "params.hidden": [8]}
    job = client.get(f"/v1/jobs/{sweep['children'][1]['job_id']}").json()
    assert job["spec"]["optimizer"]["lr"] == 0.01 and job["spec"]["params"]["hidden"] == [8]
    assert job["provenance"]["sweep"] == sweep["id"] and job["provenance"]["trial"] == 1
    assert len(_jobs(client)) == 3

    r = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["counts"] == {"cancelled": 3}
    from app.sweeps import advance

    assert advance(sweep["id"]) == 0  # no new trials after a cancel
    assert len(_jobs(client)) == 3
    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 409


def test_another_owner_sees_no_sweep(client: TestClient, other_client: TestClient) -> None:
    sweep = client.post("/v1/sweeps", json=sweep_body(parallel=1)).json()
    for path in ("", "/plot.png"):
        assert other_client.get(f"/v1/sweeps/{sweep['id']}{path}").status_code == 404
    assert other_client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 404
    assert other_client.get("/v1/sweeps").json()["items"] == []
    assert [s["id"] for s in client.get("/v1/sweeps").json()["items"]] == [sweep["id"]]


def test_the_list_pages_newest_first_by_cursor_without_repeats(client: TestClient) -> None:
    made = [client.post("/v1/sweeps", json=sweep_body(parallel=1)).json()["id"] for _ in range(3)]
    seen, cursor = [], None
    for _ in range(4):
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        r = client.get("/v1/sweeps", params=params)
        assert r.status_code == 200, r.text
        seen += [s["id"] for s in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]  # newest first, each once, and the last page says it is
    r = client.get("/v1/sweeps", params={"cursor": "not-a-cursor"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "cursor", r.text


def test_children_count_against_the_active_jobs_limit(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings
    from app.sweeps import advance

    monkeypatch.setattr(get_settings(), "max_active_jobs", 2)
    sweep = client.post("/v1/sweeps", json=sweep_body(grid={"train.seed": [0, 1, 2]})).json()
    assert len(sweep["children"]) == 2  # the third waits for a slot
    assert advance(sweep["id"]) == 0
    r = client.post("/v1/sweeps", json=sweep_body())
    assert r.status_code == 429


def test_a_tpe_sweep_is_driven_by_its_finished_children_to_a_ranked_table(
    client: TestClient,
) -> None:
    from app.sweeps import advance
    from workers.runner import run_job

    body = sweep_body(
        grid={"optimizer.lr": {"low": 1e-3, "high": 0.3, "log": True}, "params.hidden": [[4], [8]]},
        method="tpe",
        trials=3,
        parallel=1,
        metric="val_loss",
        seed=3,
    )
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]
    for _ in range(3):
        table = client.get(f"/v1/sweeps/{sweep_id}").json()
        queued = [c for c in table["children"] if c["status"] == "queued"]
        assert len(queued) == 1  # parallel 1: the next child waits for this one
        assert run_job(queued[0]["job_id"]) == "succeeded"
        advance(sweep_id)
    table = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert table["status"] == "finished" and table["finished_at"]
    assert table["counts"] == {"succeeded": 3}
    metrics = [c["metric"] for c in table["children"]]
    assert all(m is not None for m in metrics) and metrics == sorted(metrics)
    assert table["best"] == table["children"][0]
    for c in table["children"]:
        assert 1e-3 <= c["values"]["optimizer.lr"] <= 0.3
        assert c["values"]["params.hidden"] in ([4], [8])
        job = client.get(f"/v1/jobs/{c['job_id']}").json()
        assert job["metrics"]["val_loss"] == pytest.approx(c["metric"])
    assert len({c["values"]["optimizer.lr"] for c in table["children"]}) == 3

    png = client.get(f"/v1/sweeps/{sweep_id}/plot.png")
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
    assert png.headers["content-type"] == "image/png"
    assert advance(sweep_id) == 0
    assert client.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 409


def test_concurrent_passes_make_each_trial_once(client: TestClient) -> None:
    """Four reconciler passes at once (four API processes, say) after two children ended:
    the owner's admission lock lets them make exactly the two next trials."""
    from concurrent.futures import ThreadPoolExecutor

    from app.sweeps import advance

    body = sweep_body(grid={"train.seed": [0, 1, 2, 3]}, parallel=2)
    sweep = client.post("/v1/sweeps", json=body).json()
    for child in sweep["children"]:
        assert client.post(f"/v1/jobs/{child['job_id']}/cancel").status_code == 200
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda _: advance(sweep["id"]), range(4)))
    assert sum(made) == 2
    table = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert sorted(c["number"] for c in table["children"]) == [0, 1, 2, 3]
    assert table["counts"] == {"cancelled": 2, "queued": 2}
    assert len({c["job_id"] for c in table["children"]}) == 4


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_an_optimizer_lab_sweep_draws_every_path_on_one_contour(client: TestClient) -> None:
    """The optimizer lab's children share a landscape: plot.png draws their paths on its
    contour (a 7.6-inch figure at 110 dpi); children on two landscapes get the curves (8)."""
    from app.sweeps import advance
    from workers.runner import run_job

    def run(grid: dict[str, Any]) -> bytes:
        spec = {"model": "optim", "dataset": "rosenbrock", "train": {"steps": 15}}
        body = {"spec": spec, "grid": grid, "metric": "loss", "parallel": 4}
        r = client.post("/v1/sweeps", json=body)
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]
        for child in client.get(f"/v1/sweeps/{sweep_id}").json()["children"]:
            assert run_job(child["job_id"]) == "succeeded"
        advance(sweep_id)
        assert client.get(f"/v1/sweeps/{sweep_id}").json()["status"] == "finished"
        png = client.get(f"/v1/sweeps/{sweep_id}/plot.png")
        assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
        return png.content

    paths = run({"optimizer.name": ["sgd", "adam"], "params.start": [[-1.5, 2.0], [0.0, 0.0]]})
    assert png_size(paths)[0] == round(7.6 * 110)
    curves = run({"dataset": ["rosenbrock", "himmelblau"]})
    assert png_size(curves)[0] == round(8.0 * 110)


# --- Idempotency-Key ---------------------------------------------------------------------


def test_an_idempotency_key_replays_the_sweep_and_makes_no_child_twice(
    client: TestClient, other_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As POST /v1/jobs: the same key and body answer the first sweep (200, replayed), even
    with the owner's job slots full of its own children; another body is a 409 naming the
    header; another owner's same key is its own."""
    from app.config import get_settings

    monkeypatch.setattr(get_settings(), "max_active_jobs", 2)
    h = {"Idempotency-Key": "lr-sweep-1"}
    body = sweep_body(grid={"optimizer.lr": [0.01, 0.1], "train.seed": [0, 1]}, parallel=2)
    first = client.post("/v1/sweeps", json=body, headers=h)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = client.post("/v1/sweeps", json=body, headers=h)  # 2 active jobs: no 429
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == f"/v1/sweeps/{first.json()['id']}"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["children"] == first.json()["children"]
    assert len(client.get("/v1/sweeps").json()["items"]) == 1
    assert len(_jobs(client)) == 2

    for other in (
        sweep_body(grid={"optimizer.lr": [0.01, 0.2], "train.seed": [0, 1]}, parallel=2),
        sweep_body(grid={"train.seed": [0, 1], "optimizer.lr": [0.01, 0.1]}, parallel=2),
        {**body, "parallel": 1},
    ):  # another value; the keys swapped (another order of children); another field
        r = client.post("/v1/sweeps", json=other, headers=h)
        assert r.status_code == 409, r.text
        assert r.json()["errors"][0]["path"] == "Idempotency-Key"
    # the same meaning, defaults spelt out: the same request
    explicit = {**body, "method": "grid", "metric": "val_loss", "goal": "min", "seed": 0}
    assert client.post("/v1/sweeps", json=explicit, headers=h).status_code == 200
    assert len(client.get("/v1/sweeps").json()["items"]) == 1

    theirs = other_client.post("/v1/sweeps", json=sweep_body(parallel=1), headers=h)
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != first.json()["id"]
    assert client.get("/v1/sweeps").json()["items"][0]["id"] == first.json()["id"]
    # without a key, the same body is another sweep (here: no job slot left, a 429)
    assert client.post("/v1/sweeps", json=body).status_code == 429
    too_long = client.post("/v1/sweeps", json=body, headers={"Idempotency-Key": "k" * 201})
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["path"] == "idempotency-key"


def test_concurrent_requests_with_one_key_make_one_sweep(client: TestClient) -> None:
    """Four identical requests at once (a client retrying over a slow network): one sweep
    and its children, the other three answered it as replays."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    body = sweep_body(grid={"train.seed": [0, 1, 2]}, parallel=3)
    start = Barrier(4)

    def post(_: int) -> tuple[int, str]:
        start.wait()
        r = client.post("/v1/sweeps", json=body, headers={"Idempotency-Key": "race"})
        return r.status_code, r.json()["id"]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(post, range(4)))
    assert sorted(code for code, _ in answers) == [200, 200, 200, 201], answers
    assert len({sweep_id for _, sweep_id in answers}) == 1
    assert len(client.get("/v1/sweeps").json()["items"]) == 1
    assert len(_jobs(client)) == 3


def test_a_child_that_never_logs_the_metric_is_ranked_after_every_child_that_did(
    client: TestClient,
) -> None:
    """The optimizer lab ranked by ``settled_step``: sgd on the 2-D quadratic (λ 1 and 10)
    settles at lr 0.1; at 1e-3 it succeeds without settling in 200 steps (no metric logged);
    at 1 (past 2/λmax) it diverges and fails. The table puts the settled child first and
    best, then the other two by number, each with a null metric and its own status."""
    from app.sweeps import advance
    from workers.runner import run_job

    spec = {"model": "optim", "dataset": "quadratic", "optimizer": {"name": "sgd"},
            "train": {"steps": 200}}  # fmt: skip
    body = {"spec": spec, "grid": {"optimizer.lr": [1e-3, 0.1, 1.0]},
            "metric": "settled_step", "parallel": 3}  # fmt: skip
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]
    outcome = {}
    for child in r.json()["children"]:
        outcome[child["values"]["optimizer.lr"]] = run_job(child["job_id"])
    assert outcome == {1e-3: "succeeded", 0.1: "succeeded", 1.0: "failed"}
    advance(sweep_id)
    table = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert table["status"] == "finished"
    rows = [(c["number"], c["status"], c["metric"]) for c in table["children"]]
    settled = table["children"][0]["metric"]
    assert rows == [(1, "succeeded", settled), (0, "succeeded", None), (2, "failed", None)]
    assert table["best"] == table["children"][0]
    job = client.get(f"/v1/jobs/{table['children'][0]['job_id']}").json()
    assert job["metrics"]["settled_step"] == settled and 50 < settled < 200
    unsettled = client.get(f"/v1/jobs/{table['children'][1]['job_id']}").json()
    assert "settled_step" not in unsettled["metrics"] and unsettled["metrics"]["loss"] > 1e-6


def test_a_legend_says_a_succeeded_child_has_no_metric_rather_than_that_it_succeeded() -> None:
    from app.api.sweeps import legend_outcome
    from app.sweeps import Child

    def child(status: str, metric: float | None) -> Child:
        return Child(0, {}, "job_x", status, metric, None)

    assert legend_outcome(child("succeeded", 1484.0), "settled_step") == " → 1484"
    assert legend_outcome(child("succeeded", None), "settled_step") == " (no settled_step)"
    assert legend_outcome(child("failed", None), "settled_step") == " (failed)"
