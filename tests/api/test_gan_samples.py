"""GAN samples and latent interpolations over HTTP, on jobs trained in process (real
SQLite/PostgreSQL, the runner without a worker)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.jobs import GAN_TINY, PNG_MAGIC, gan_job


def test_samples_json_png_and_label_on_a_2d_gan(client: TestClient) -> None:
    job = gan_job(client, "rings8")
    metrics = client.get(f"/v1/jobs/{job}").json()["metrics"]
    assert {"modes", "hq", "js_modes", "d_real", "d_fake", "g_grad_norm"} <= set(metrics)

    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 20, "seed": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["seed"] == 5 and len(body["samples"]) == 20 and len(body["samples"][0]) == 2
    again = client.get(f"/v1/jobs/{job}/samples", params={"n": 20, "seed": 5}).json()
    assert again["samples"] == body["samples"]
    other = client.get(f"/v1/jobs/{job}/samples", params={"n": 20, "seed": 6}).json()
    assert other["samples"] != body["samples"]

    png = client.get(f"/v1/jobs/{job}/samples", params={"n": 200, "format": "png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_MAGIC)

    bad = client.get(f"/v1/jobs/{job}/samples", params={"n": 4, "label": 1})
    assert bad.status_code == 422, bad.text
    assert bad.json()["errors"][0]["path"] == "label"
    assert client.get(f"/v1/jobs/{job}/samples", params={"n": 4, "label": 99}).status_code == 422

    # no images: nothing to interpolate on a picture; GANs have no log-likelihood
    assert client.get(f"/v1/jobs/{job}/interpolate.png").status_code == 409
    r = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": [[0.0, 1.0]]})
    assert r.status_code == 409
    assert client.get(f"/v1/jobs/{job}/density.png").status_code == 409
    r = client.post(f"/v1/jobs/{job}/decode", json={"latents": [[0.0] * 4, [1.0] * 4]})
    assert r.status_code == 200 and len(r.json()["outputs"]) == 2
    r = client.post(f"/v1/jobs/{job}/encode", json={"inputs": [[0.0, 1.0]]})
    assert r.status_code == 409


def test_conditional_image_gan_grid_interpolation_and_labels(client: TestClient) -> None:
    job = gan_job(client, "digits", conditional=True)
    metrics = client.get(f"/v1/jobs/{job}").json()["metrics"]
    assert {"classes_covered", "class_kl", "label_accuracy"} <= set(metrics)

    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 6, "seed": 1, "label": 3})
    assert r.status_code == 200, r.text
    samples = r.json()["samples"]
    assert len(samples) == 6 and len(samples[0]) == 64  # digits: 64 values in 0..16
    assert all(0 <= v <= 16 for row in samples for v in row)
    no_label = client.get(f"/v1/jobs/{job}/samples", params={"n": 6, "seed": 1})
    assert no_label.status_code == 200  # labels drawn from the seed

    grid = client.get(f"/v1/jobs/{job}/samples", params={"n": 16, "format": "png", "label": 2})
    assert grid.status_code == 200 and grid.content.startswith(PNG_MAGIC)

    png = client.get(f"/v1/jobs/{job}/interpolate.png", params={"a": 3, "b": 9, "label": 4})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_MAGIC)
    missing = client.get(f"/v1/jobs/{job}/interpolate.png", params={"a": 3, "b": 9})
    assert missing.status_code == 422 and missing.json()["errors"][0]["path"] == "label"


def test_unconditional_image_gan_interpolates_between_seeds(client: TestClient) -> None:
    job = gan_job(client, "digits")
    a = client.get(f"/v1/jobs/{job}/interpolate.png", params={"a": 0, "b": 5, "steps": 6})
    assert a.status_code == 200 and a.content.startswith(PNG_MAGIC)
    b = client.get(f"/v1/jobs/{job}/interpolate.png", params={"a": 0, "b": 5, "steps": 6})
    assert a.content == b.content  # the ends come from the seeds: same request, same picture
    bad = client.get(f"/v1/jobs/{job}/interpolate.png", params={"label": 1})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "label"


def test_drs_job_samples_and_refuses_a_critic(client: TestClient) -> None:
    job = gan_job(client, "rings8", drs=True, drs_steps=10)
    metrics = client.get(f"/v1/jobs/{job}").json()["metrics"]
    assert {"drs_max_logit", "drs_acceptance", "drs_modes", "drs_hq", "modes"} <= set(metrics)
    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 30, "seed": 2})
    assert r.status_code == 200, r.text
    samples = r.json()["samples"]
    assert len(samples) == 30 and len(samples[0]) == 2
    longer = client.get(f"/v1/jobs/{job}/samples", params={"n": 60, "seed": 2}).json()
    assert longer["samples"][:30] == samples  # the first n kept do not depend on n

    r = client.post(
        "/v1/jobs",
        json={
            "model": "gan",
            "dataset": "rings8",
            "params": {**GAN_TINY, "drs": True, "loss": "wasserstein"},
            "train": {"steps": 5},
        },
    )
    assert r.status_code == 422 and "drs" in r.text, r.text
