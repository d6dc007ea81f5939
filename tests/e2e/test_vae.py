"""End to end: a tiny VAE trained by a real worker, then sampled, scored, encoded, decoded
and interpolated through the real API."""

from __future__ import annotations

import pytest

from models.data import load
from tests.stack import Stack

pytestmark = pytest.mark.e2e


def test_vae_train_then_generative_routes(stack: Stack) -> None:
    job = stack.post_job(
        {
            "model": "vae",
            "dataset": "digits_bin",
            "params": {"hidden": [32], "z_dim": 2, "k_eval": 8, "grad_var_samples": 2},
            "train": {"epochs": 3, "batch_size": 128, "seed": 0},
        }
    )
    done = stack.wait_status(job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    assert {"elbo", "elbo_3term", "val_elbo", "grad_var", "test_iwae_nll"} <= set(done["metrics"])
    base, c = f"/v1/jobs/{job['id']}", stack.client

    one = c.get(f"{base}/samples", params={"n": 3, "seed": 11}).json()
    assert c.get(f"{base}/samples", params={"n": 3, "seed": 11}).json() == one
    x = load("digits_bin").x_test[:2].tolist()
    lp = c.post(f"{base}/log-prob", json={"inputs": x, "k": 20}).json()
    assert lp["exact"] is False and lp["k"] == 20 and all(v < 0 for v in lp["log_prob"])
    enc = c.post(f"{base}/encode", json={"inputs": x}).json()
    dec = c.post(f"{base}/decode", json={"latents": enc["mean"]}).json()
    assert len(dec["outputs"]) == 2 and len(dec["outputs"][0]) == 64
    r = c.get(f"{base}/interpolate.png", params={"a": 0, "b": 1, "steps": 5})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
