"""pixelvae over HTTP, trained in process: its leaderboard entry (a bound), seeded samples
on the data's levels, log-prob as an importance-weighted bound (``k``), encode -> decode
(images drawn from p(x|z)), the pictures of part I (receptive field, completions,
interpolation), the 422s naming the field, and decode's work bound counting a pass per
pixel."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from models.data import load
from tests.support.jobs import PNG_MAGIC, trained

TINY = {"latent_dim": 2, "hidden": 8, "channels": 4, "decoder_layers": 1, "k_eval": 2}


def path(r: object) -> str:
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    return str(r.json()["errors"][0]["path"])  # type: ignore[attr-defined]


def test_pixelvae_routes(client: TestClient, other_client: TestClient) -> None:
    spec = {
        "model": "pixelvae",
        "dataset": "digits",
        "params": TINY,
        "train": {"epochs": 1, "batch_size": 128},
    }
    job = trained(client, spec)
    metrics = client.get(f"/v1/jobs/{job}").json()["metrics"]
    expected = {"val_elbo", "val_kl", "active_units", "test_iwae_nll", "sample_seconds_per_image"}
    assert expected <= set(metrics)
    levels = {float(v) for v in range(17)}

    # the leaderboard ranks it by its importance-weighted bound, with k_eval samples
    board = client.get("/v1/leaderboard", params={"dataset": "digits"}).json()
    (entry,) = [e for e in board["entries"] if e["job_id"] == job]
    assert entry["model"] == "pixelvae" and entry["kind"] == "bound" and entry["samples"] == 2
    rows = client.get(f"/v1/jobs/{job}/metrics", params={"name": "test_iwae_nll"}).json()
    assert entry["nll"] == pytest.approx(rows["metrics"][-1]["value"])

    url = f"/v1/jobs/{job}/samples"
    a = client.get(url, params={"n": 3, "seed": 7})
    assert a.status_code == 200, a.text
    samples = a.json()["samples"]
    assert len(samples) == 3 and len(samples[0]) == 64
    assert {v for row in samples for v in row} <= levels
    assert client.get(url, params={"n": 3, "seed": 7}).json()["samples"] == samples
    png = client.get(url, params={"n": 4, "format": "png"})
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
    assert path(client.get(url, params={"n": 2, "label": 1})) == "label"
    assert path(client.get(url, params={"n": 2, "temperature": 0})) == "temperature"

    test_x = load("digits").x_test[:3].tolist()
    body = {"inputs": test_x, "k": 8}
    lp = client.post(f"/v1/jobs/{job}/log-prob", json=body).json()
    assert lp["exact"] is False and lp["kind"] == "bound" and lp["k"] == 8
    assert all(v < 0 for v in lp["log_prob"])
    assert lp["bits_per_dim"] == pytest.approx([-v / (64 * math.log(2)) for v in lp["log_prob"]])
    assert client.post(f"/v1/jobs/{job}/log-prob", json=body).json() == lp
    assert client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": test_x}).json()["k"] == 100
    assert path(client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": [[0.5] * 64]})) == (
        "inputs"
    )
    assert path(client.post(f"/v1/jobs/{job}/log-prob", json={**body, "labels": [1, 2, 3]})) == (
        "labels"
    )

    enc = client.post(f"/v1/jobs/{job}/encode", json={"inputs": test_x}).json()
    assert [len(enc["mean"]), len(enc["mean"][0]), len(enc["log_var"][0])] == [3, 2, 2]
    dec = client.post(f"/v1/jobs/{job}/decode", json={"latents": enc["mean"]})
    assert dec.status_code == 200, dec.text
    outputs = dec.json()["outputs"]
    assert len(outputs) == 3 and {v for row in outputs for v in row} <= levels
    assert path(client.post(f"/v1/jobs/{job}/decode", json={"latents": [[0.0] * 3]})) == (
        "latents[0]"
    )
    # decoding runs a pass per pixel (576 forward rows): 10⁴ latents are over the bound
    many = client.post(f"/v1/jobs/{job}/decode", json={"latents": [[0.0, 0.0]] * 10_000})
    assert path(many) == "latents" and "forward rows each" in many.text

    for picture, params in (
        ("receptive-field.png", {"row": 5, "col": 2}),
        ("completions.png", {"n": 2, "samples": 2}),
        ("interpolate.png", {"a": 0, "b": 1, "steps": 3}),
    ):
        r = client.get(f"/v1/jobs/{job}/{picture}", params=params)
        assert r.status_code == 200 and r.content.startswith(PNG_MAGIC), (picture, r.text)
    field = client.get(f"/v1/jobs/{job}/receptive-field", params={"row": 5, "col": 2}).json()
    influenced = {(i, j) for i in range(8) for j in range(8) if field["field"][i][j] > 0}
    assert influenced and all(i * 8 + j < 5 * 8 + 2 for i, j in influenced)

    for r in (
        other_client.get(url),
        other_client.post(f"/v1/jobs/{job}/decode", json={"latents": [[0.0, 0.0]]}),
    ):
        assert r.status_code == 404
