"""End to end: a flow trained by a real worker, then sampled and scored over HTTP."""

from __future__ import annotations

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.e2e


def test_flow_moons_samples_and_log_prob(stack: Stack) -> None:
    job = stack.post_job(
        {
            "model": "flow",
            "dataset": "moons",
            "params": {"transform": "maf", "layers": 2, "hidden": [16]},
            "train": {"epochs": 2, "batch_size": 128, "seed": 0},
        }
    )
    done = stack.wait_status(job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    assert {"val_nll", "test_nll", "var_ratio"} <= set(done["metrics"])
    url = f"/v1/jobs/{job['id']}"
    a = stack.client.get(f"{url}/samples", params={"n": 8, "seed": 3}).json()
    b = stack.client.get(f"{url}/samples", params={"n": 8, "seed": 3}).json()
    assert a["samples"] == b["samples"] and len(a["samples"]) == 8
    out = stack.client.post(f"{url}/log-prob", json={"inputs": a["samples"][:2]}).json()
    assert out["exact"] is True and len(out["bits_per_dim"]) == 2
    png = stack.client.get(f"{url}/density.png", params={"points": 32})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
