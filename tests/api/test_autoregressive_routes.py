"""made and nade over HTTP, trained in process: seeded samples (JSON, PNG grid), exact
log-prob in nats and bits per dimension, density.png on 2-D data, and the 422s naming
the field at fault (label, temperature, inputs, params)."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from tests.support.jobs import PNG_MAGIC, trained

TINY = {"made": {"hidden": [16], "num_masks": 2, "inference_masks": 2}, "nade": {"hidden": 16}}


def job(client: TestClient, model: str, dataset: str) -> str:
    spec = {
        "model": model,
        "dataset": dataset,
        "params": TINY[model],
        "train": {"epochs": 1, "batch_size": 128},
    }
    return trained(client, spec)


@pytest.mark.parametrize("model", ["made", "nade"])
def test_binary_images_sample_and_score_exactly(client: TestClient, model: str) -> None:
    jid = job(client, model, "digits_bin")
    url = f"/v1/jobs/{jid}/samples"
    a = client.get(url, params={"n": 4, "seed": 7})
    assert a.status_code == 200, a.text
    samples = a.json()["samples"]
    assert len(samples) == 4 and len(samples[0]) == 64
    assert {v for row in samples for v in row} <= {0.0, 1.0}
    assert client.get(url, params={"n": 4, "seed": 7}).json()["samples"] == samples
    png = client.get(url, params={"n": 16, "format": "png"})
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)

    r = client.post(f"/v1/jobs/{jid}/log-prob", json={"inputs": samples})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["exact"] is True and all(lp < 0 for lp in out["log_prob"])
    assert out["bits_per_dim"] == pytest.approx(
        [-lp / (64 * math.log(2)) for lp in out["log_prob"]]
    )

    half = [[0.5] * 64]
    r = client.post(f"/v1/jobs/{jid}/log-prob", json={"inputs": half})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "inputs"
    r = client.get(url, params={"n": 2, "label": 1})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "label"
    assert client.get(url, params={"n": 2, "temperature": 0}).status_code == 422


@pytest.mark.parametrize("model", ["made", "nade"])
def test_real_valued_points_get_a_density_plot(client: TestClient, model: str) -> None:
    jid = job(client, model, "moons")
    r = client.post(f"/v1/jobs/{jid}/log-prob", json={"inputs": [[0.5, 0.25], [8.0, 8.0]]})
    assert r.status_code == 200, r.text
    near, far = r.json()["log_prob"]
    assert near > far
    png = client.get(f"/v1/jobs/{jid}/density.png", params={"points": 32})
    assert png.status_code == 200, png.text
    assert png.content.startswith(PNG_MAGIC)


@pytest.mark.parametrize("model", ["made", "nade"])
def test_a_likelihood_the_data_cannot_take_is_a_422_at_params(
    client: TestClient, model: str
) -> None:
    spec = {"model": model, "dataset": "moons", "params": {"likelihood": "bernoulli"}}
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"].startswith("params")
