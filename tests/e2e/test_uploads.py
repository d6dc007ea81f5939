"""End to end over real HTTP: upload a CSV, train on it in a real worker, predict."""

from __future__ import annotations

import numpy as np
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.e2e


def table(n: int = 80) -> bytes:
    rng = np.random.default_rng(0)
    lines = ["rooms,area,kind,price"]
    for _ in range(n):
        rooms, area = int(rng.integers(1, 6)), float(rng.uniform(30, 200))
        kind = "flat" if area < 100 else "house"
        lines.append(f"{rooms},{area:.1f},{int(kind == 'house')},{1000 * area + rng.normal():.2f}")
    return ("\n".join(lines) + "\n").encode()


def test_upload_train_predict(stack: Stack) -> None:
    up = stack.client.post(
        "/v1/datasets",
        files={"file": ("houses.csv", table())},
        data={"name": "houses", "target": "price"},
    )
    assert up.status_code == 201, up.text
    ds = up.json()
    assert ds["task"] == "regression" and ds["features"] == ["rooms", "area", "kind"]

    job = stack.post_job(
        {
            "model": "mc_dropout",
            "dataset": ds["id"],
            "params": {"hidden": [16], "dropout": 0.1},
            "train": {"epochs": 5, "batch_size": 16},
        }
    )
    done = stack.wait_status(job["id"], {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    assert done["provenance"]["dataset_sha256"]
    r = stack.client.post(
        f"/v1/jobs/{job['id']}/predict",
        json={"inputs": [[3, 120.0, 1], [1, 40.0, 0]], "mc_samples": 20},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["task"] == "regression" and len(out["mean"]) == 2
    assert all(v > 0 for v in np.array(out["epistemic_var"]).ravel())
    bad = stack.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1.0, 2.0]]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "inputs[0]"
    # calibration on the upload's test split, stored as metrics of the served checkpoint
    assert {"cal_nll", "cal_rmse", "cal_coverage_95", "cal_width_95"} <= set(done["metrics"])
    # active learning on the user's own feature space: far-out houses first
    pool = [[3, 120.0, 1], [2, 80.0, 0], [9, 2000.0, 1], [3, 110.0, 1]]
    r = stack.client.post(
        f"/v1/jobs/{job['id']}/acquire", json={"pool": pool, "k": 2, "strategy": "variance"}
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 2 and items[0]["score"] >= items[1]["score"]
    assert items[0]["index"] == 2 and items[0]["input"] == pool[2]

    # the same file's integer column as a classification target: probs over its classes
    up = stack.client.post(
        "/v1/datasets",
        files={"file": ("houses.csv", table())},
        data={"name": "kinds", "target": "kind"},
    )
    kinds = up.json()
    assert kinds["task"] == "classification" and kinds["classes"] == ["0", "1"]
    job = stack.post_job(
        {"model": "mlp", "dataset": kinds["id"], "params": {"hidden": [8]}, "train": {"epochs": 3}}
    )
    done = stack.wait_status(job["id"], {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    r = stack.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[3, 120.0, 0.5]]})
    assert r.status_code == 200 and len(r.json()["probs"][0]) == 2

    # a deep ensemble on the same upload: BALD ranks a pool by the members' disagreement
    ens = stack.post_job(
        {
            "model": "ensemble",
            "dataset": kinds["id"],
            "params": {"members": 3, "hidden": [8]},
            "train": {"epochs": 3},
        }
    )
    done = stack.wait_status(ens["id"], {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    assert {"cal_nll", "cal_accuracy", "cal_brier", "cal_ece"} <= set(done["metrics"])
    pool = [[3, 120.0, 0.5], [1, 40.0, 0.0], [5, 99.0, 1.0]]
    r = stack.client.post(
        f"/v1/jobs/{ens['id']}/acquire", json={"pool": pool, "k": 3, "strategy": "bald"}
    )
    assert r.status_code == 200, r.text
    scores = [item["score"] for item in r.json()["items"]]
    assert scores == sorted(scores, reverse=True) and all(v >= 0 for v in scores)

    # a finished job keeps predicting after its dataset is deleted
    assert stack.client.delete(f"/v1/datasets/{kinds['id']}").status_code == 204
    r = stack.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[3, 120.0, 0.5]]})
    assert r.status_code == 200
