"""pixelcnn_pp over HTTP, trained in process on ``digits`` (17 levels): seeded samples on the
levels (JSON, PNG grid), exact log-prob in nats and bits per dimension, the receptive field
without a blind spot, completions, and the 422s naming the field at fault."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from tests.support.jobs import PNG_MAGIC, trained

TINY = {"filters": 4, "nr_resnet": 1, "components": 2}


def test_pixelcnn_pp_samples_and_scores_grey_images_exactly(client: TestClient) -> None:
    spec = {
        "model": "pixelcnn_pp",
        "dataset": "digits",
        "params": TINY,
        "train": {"epochs": 1, "batch_size": 128},
    }
    jid = trained(client, spec)
    url = f"/v1/jobs/{jid}/samples"
    a = client.get(url, params={"n": 3, "seed": 7})
    assert a.status_code == 200, a.text
    samples = a.json()["samples"]
    assert len(samples) == 3 and len(samples[0]) == 64
    assert {v for row in samples for v in row} <= {float(v) for v in range(17)}
    assert client.get(url, params={"n": 3, "seed": 7}).json()["samples"] == samples
    cold = client.get(url, params={"n": 3, "seed": 7, "temperature": 0.2}).json()["samples"]
    assert cold != samples
    png = client.get(url, params={"n": 4, "format": "png"})
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)

    r = client.post(f"/v1/jobs/{jid}/log-prob", json={"inputs": samples})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["exact"] is True and all(lp < 0 for lp in out["log_prob"])
    assert out["bits_per_dim"] == pytest.approx(
        [-lp / (64 * math.log(2)) for lp in out["log_prob"]]
    )
    r = client.post(f"/v1/jobs/{jid}/log-prob", json={"inputs": [[0.5] * 64]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "inputs"
    r = client.get(url, params={"n": 2, "temperature": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "temperature"
    r = client.get(url, params={"n": 2, "label": 3})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "label"

    # pixel (5, 2): only pixels before it, and (4, 6), pixelcnn's blind spot, among them
    r = client.get(f"/v1/jobs/{jid}/receptive-field", params={"row": 5, "col": 2})
    assert r.status_code == 200, r.text
    field = r.json()["field"]
    influenced = {(i, j) for i in range(8) for j in range(8) if field[i][j] > 0}
    before = {(i, j) for i in range(8) for j in range(8) if i * 8 + j < 5 * 8 + 2}
    assert (4, 6) in influenced and influenced <= before
    url = f"/v1/jobs/{jid}/completions.png"
    a = client.get(url, params={"n": 2, "samples": 2, "seed": 4})
    assert a.status_code == 200 and a.content.startswith(PNG_MAGIC), a.text


def test_bad_params_are_a_422_naming_the_field(client: TestClient) -> None:
    spec = {"model": "pixelcnn_pp", "dataset": "digits", "params": {**TINY, "components": 0}}
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422, r.text
    assert "components" in r.text
    r = client.post("/v1/jobs", json={"model": "pixelcnn_pp", "dataset": "moons", "params": TINY})
    assert r.status_code == 422, r.text
