"""The generative routes on flows trained in process: samples (JSON, PNG), log-prob,
density.png."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from models.data import load
from tests.support.jobs import PNG_MAGIC, trained

MOONS = {
    "model": "flow",
    "dataset": "moons",
    "params": {"transform": "realnvp", "layers": 2, "hidden": [16]},
    "train": {"epochs": 2, "batch_size": 128},
}


def test_samples_json_png_and_limits(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    job = trained(client, MOONS)
    url = f"/v1/jobs/{job}/samples"
    a = client.get(url, params={"n": 5, "seed": 7})
    assert a.status_code == 200, a.text
    body = a.json()
    assert body["seed"] == 7 and len(body["samples"]) == 5 and len(body["samples"][0]) == 2
    assert client.get(url, params={"n": 5, "seed": 7}).json()["samples"] == body["samples"]
    assert client.get(url, params={"n": 5, "seed": 8}).json()["samples"] != body["samples"]
    cold = client.get(url, params={"n": 5, "seed": 7, "temperature": 0.5}).json()
    assert cold["temperature"] == 0.5 and cold["samples"] != body["samples"]

    png = client.get(url, params={"n": 200, "format": "png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_MAGIC)

    from app.config import get_settings

    monkeypatch.setenv("DEEPZOO_MAX_SAMPLES", "50")
    get_settings.cache_clear()
    r = client.get(url, params={"n": 51})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "n"
    r = client.get(url, params={"n": 2, "label": 1})  # unconditional
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "label"
    r = client.get(url, params={"n": 2, "temperature": 0})
    assert r.status_code == 422


def test_log_prob_exact_and_density_png(client: TestClient, other_client: TestClient) -> None:
    job = trained(client, MOONS)
    near, far = [0.5, 0.25], [8.0, 8.0]
    r = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": [near, far]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["exact"] is True and len(out["log_prob"]) == 2
    assert out["log_prob"][0] > out["log_prob"][1]
    expected = [-lp / (2 * math.log(2)) for lp in out["log_prob"]]
    assert out["bits_per_dim"] == pytest.approx(expected)

    r = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": [near], "labels": [0]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "labels"
    r = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": [[1.0, 2.0, 3.0]]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "inputs[0]"

    png = client.get(f"/v1/jobs/{job}/density.png", params={"points": 40})
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
    assert client.get(f"/v1/jobs/{job}/density.png", params={"points": 4}).status_code == 422
    for r in (
        other_client.get(f"/v1/jobs/{job}/samples"),
        other_client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": [near]}),
        other_client.get(f"/v1/jobs/{job}/density.png"),
    ):
        assert r.status_code == 404


def test_digits_bits_per_dim_sample_grid_and_no_density(client: TestClient) -> None:
    job = trained(
        client,
        {
            "model": "flow",
            "dataset": "digits",
            "params": {"transform": "maf", "layers": 2, "hidden": [32]},
            "train": {"epochs": 1, "batch_size": 128},
        },
    )
    x = load("digits").x_test[:3].tolist()
    out = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": x, "k": 4}).json()
    assert out["exact"] is False and out["k"] == 4  # a dequantisation bound on log P(v)
    assert all(lp < 0 for lp in out["log_prob"])
    assert out["bits_per_dim"] == pytest.approx(
        [-lp / (64 * math.log(2)) for lp in out["log_prob"]]
    )
    r = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": [[20.0] * 64]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "inputs"

    samples = client.get(f"/v1/jobs/{job}/samples", params={"n": 4, "seed": 1}).json()["samples"]
    assert len(samples) == 4 and len(samples[0]) == 64
    assert all(0 <= v <= 16 and v == int(v) for s in samples for v in s)
    png = client.get(f"/v1/jobs/{job}/samples", params={"n": 9, "format": "png"})
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
    r = client.get(f"/v1/jobs/{job}/density.png")
    assert r.status_code == 409 and "2-D" in r.json()["detail"]
    assert client.post(f"/v1/jobs/{job}/encode", json={"inputs": x}).status_code == 409


def test_reverse_kl_job_needs_a_known_density(client: TestClient) -> None:
    r = client.post("/v1/jobs", json={**MOONS, "params": {"target": "banana"}})
    assert r.status_code == 422 and "reverse_kl" in r.text
    r = client.post(
        "/v1/jobs", json={**MOONS, "params": {"transform": "planar", "batchnorm": True}}
    )
    assert r.status_code == 422 and "batchnorm" in r.text
    spec = {**MOONS, "dataset": "rings8", "params": {"objective": "reverse_kl", "layers": 2}}
    spec["train"] = {"steps": 20, "batch_size": 64}
    job = trained(client, spec)
    metrics = client.get(f"/v1/jobs/{job}").json()["metrics"]
    assert {"var_ratio", "log_z_elbo", "val_reverse_kl", "test_nll"} <= set(metrics)
