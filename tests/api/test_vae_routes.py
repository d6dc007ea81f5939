"""A VAE's generative routes on jobs trained in process: samples, log-prob (the
importance-weighted bound), encode, decode and interpolate.png."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from models.data import load
from tests.support.jobs import PNG_MAGIC, trained


def vae_job(client: TestClient, dataset: str = "digits_bin", **params: Any) -> str:
    return trained(
        client,
        {
            "model": "vae",
            "dataset": dataset,
            "params": {"hidden": [16], "z_dim": 2, "k_eval": 4, "grad_var_samples": 2, **params},
            "train": {"epochs": 2, "batch_size": 128},
        },
    )


def path(r: Any) -> str:
    assert r.status_code == 422, r.text
    return str(r.json()["errors"][0]["path"])


def test_unconditional_vae_routes(client: TestClient, other_client: TestClient) -> None:
    job = vae_job(client)
    metrics = client.get(f"/v1/jobs/{job}").json()["metrics"]
    assert {"elbo", "elbo_3term", "grad_var", "test_iwae_nll", "test_iwae_bpd"} <= set(metrics)
    test_x = load("digits_bin").x_test[:3].tolist()

    # samples: Bernoulli means, seeded
    a = client.get(f"/v1/jobs/{job}/samples", params={"n": 4, "seed": 7}).json()
    assert a["seed"] == 7 and len(a["samples"]) == 4 and len(a["samples"][0]) == 64
    assert all(0 <= v <= 1 for row in a["samples"] for v in row)
    assert client.get(f"/v1/jobs/{job}/samples", params={"n": 4, "seed": 7}).json() == a
    cool = client.get(f"/v1/jobs/{job}/samples", params={"n": 4, "seed": 7, "temperature": 0.1})
    assert cool.json()["samples"] != a["samples"]
    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 9, "format": "png"})
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)
    assert path(client.get(f"/v1/jobs/{job}/samples", params={"label": 1})) == "label"

    # log-prob: a bound, k importance samples, same input same answer
    body = {"inputs": test_x, "k": 50}
    lp = client.post(f"/v1/jobs/{job}/log-prob", json=body).json()
    assert lp["exact"] is False and lp["k"] == 50 and len(lp["log_prob"]) == 3
    assert lp["kind"] == "bound" and lp["stderr"] is None
    assert all(v < 0 for v in lp["log_prob"]) and all(v > 0 for v in lp["bits_per_dim"])
    assert client.post(f"/v1/jobs/{job}/log-prob", json=body).json() == lp
    assert client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": test_x}).json()["k"] == 100
    assert path(client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": [[0.0] * 5]})) == (
        "inputs[0]"
    )
    assert path(client.post(f"/v1/jobs/{job}/log-prob", json={**body, "k": 10**6})) == "k"
    assert path(client.post(f"/v1/jobs/{job}/log-prob", json={**body, "labels": [1, 2, 3]})) == (
        "labels"
    )

    # encode -> decode: posterior means and the decoder's probabilities
    enc = client.post(f"/v1/jobs/{job}/encode", json={"inputs": test_x}).json()
    assert [len(enc["mean"]), len(enc["mean"][0]), len(enc["log_var"][0])] == [3, 2, 2]
    dec = client.post(f"/v1/jobs/{job}/decode", json={"latents": enc["mean"]}).json()
    assert len(dec["outputs"]) == 3 and len(dec["outputs"][0]) == 64
    assert all(0 <= v <= 1 for row in dec["outputs"] for v in row)
    assert path(client.post(f"/v1/jobs/{job}/decode", json={"latents": [[0.0] * 3]})) == (
        "latents[0]"
    )
    r = client.post(f"/v1/jobs/{job}/encode", json={"inputs": test_x, "labels": [0, 1, 2]})
    assert path(r) == "labels"
    assert path(client.post(f"/v1/jobs/{job}/encode", json={"inputs": [[1.0]]})) == "inputs[0]"

    # interpolation between two test examples' posterior means
    r = client.get(f"/v1/jobs/{job}/interpolate.png", params={"a": 0, "b": 5, "steps": 6})
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)
    assert path(client.get(f"/v1/jobs/{job}/interpolate.png", params={"a": 10**6})) == "a"
    assert path(client.get(f"/v1/jobs/{job}/interpolate.png", params={"label": 2})) == "label"
    assert path(client.get(f"/v1/jobs/{job}/interpolate.png", params={"steps": 1})) == "steps"
    assert client.get(f"/v1/jobs/{job}/density.png").status_code == 409  # images, not 2-D

    for r in (
        other_client.get(f"/v1/jobs/{job}/samples"),
        other_client.post(f"/v1/jobs/{job}/encode", json={"inputs": test_x}),
        other_client.post(f"/v1/jobs/{job}/decode", json={"latents": [[0.0, 0.0]]}),
        other_client.get(f"/v1/jobs/{job}/interpolate.png"),
    ):
        assert r.status_code == 404


def test_conditional_vae_routes_need_labels(client: TestClient) -> None:
    job = vae_job(client, "digits", conditional=True, architecture="conv", channels=4)
    test_x = load("digits").x_test[:2].tolist()

    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 3, "label": 4})
    assert r.status_code == 200 and all(0 <= v <= 16 for s in r.json()["samples"] for v in s)
    assert path(client.get(f"/v1/jobs/{job}/samples", params={"label": 10})) == "label"

    assert path(client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": test_x})) == "labels"
    ok = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": test_x, "labels": [1, 2]})
    assert ok.status_code == 200 and len(ok.json()["log_prob"]) == 2
    r = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": test_x, "labels": [1]})
    assert path(r) == "labels"
    r = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": test_x, "labels": [1, 11]})
    assert path(r) == "labels[1]"

    enc = client.post(f"/v1/jobs/{job}/encode", json={"inputs": test_x, "labels": [3, 3]})
    assert enc.status_code == 200 and len(enc.json()["mean"]) == 2
    assert path(client.post(f"/v1/jobs/{job}/decode", json={"latents": [[0.0, 0.0]]})) == "labels"
    dec = client.post(f"/v1/jobs/{job}/decode", json={"latents": [[0.0, 0.0]], "labels": [7]})
    assert dec.status_code == 200 and len(dec.json()["outputs"][0]) == 64

    r = client.get(f"/v1/jobs/{job}/interpolate.png", params={"a": 1, "b": 2, "label": 5})
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)
    assert path(client.get(f"/v1/jobs/{job}/interpolate.png")) == "label"


def test_vae_on_two_dimensional_data(client: TestClient) -> None:
    job = vae_job(client, "moons")
    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 50, "format": "png"})
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)
    r = client.get(f"/v1/jobs/{job}/density.png", params={"points": 20, "k": 4})
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)
    assert client.get(f"/v1/jobs/{job}/interpolate.png").status_code == 409
