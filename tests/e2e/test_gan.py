"""End to end: a tiny GAN trained by a real worker, then sampled over HTTP."""

from __future__ import annotations

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.e2e

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_gan_trains_and_samples(stack: Stack) -> None:
    job = stack.post_job(
        {
            "model": "gan",
            "dataset": "rings8",
            "params": {"loss": "wasserstein", "hidden_g": [16], "hidden_d": [16]},
            "train": {"steps": 20, "batch_size": 128, "seed": 0},
        }
    )
    done = stack.wait_status(job["id"], {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done
    assert {"modes", "hq", "d_real", "d_fake", "g_grad_norm"} <= set(done["metrics"])
    r = stack.client.get(f"/v1/jobs/{job['id']}/samples", params={"n": 8, "seed": 3})
    assert r.status_code == 200 and len(r.json()["samples"]) == 8
    png = stack.client.get(f"/v1/jobs/{job['id']}/samples", params={"n": 300, "format": "png"})
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
