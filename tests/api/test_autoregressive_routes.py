"""made and nade over HTTP, trained in process: seeded samples (JSON, PNG grid), exact
log-prob in nats and bits per dimension (its bound on work counting made's masks),
density.png on 2-D data, receptive fields and completions of images (the 409s for a
random order, for points, for a model without them), and the 422s naming the field at
fault (label, temperature, inputs, params, row, col, n, samples)."""

from __future__ import annotations

import math

import pytest
import torch
from fastapi.testclient import TestClient

from app.problems import Problem
from tests.support.jobs import PNG_MAGIC, built, trained

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


@pytest.mark.parametrize("model", ["made", "nade"])
def test_receptive_field_and_completions_of_binary_images(client: TestClient, model: str) -> None:
    jid = job(client, model, "digits_bin")
    r = client.get(f"/v1/jobs/{jid}/receptive-field", params={"row": 2, "col": 3})
    assert r.status_code == 200, r.text
    field = r.json()["field"]
    assert len(field) == 8 and len(field[0]) == 8
    # order natural: the pixels before (2, 3) in raster order, and not the pixel itself
    influenced = {(i, j) for i in range(8) for j in range(8) if field[i][j] > 0}
    assert influenced <= {(i, j) for i in range(8) for j in range(8) if i * 8 + j < 19}
    assert influenced and r.json()["influences"] == len(influenced)
    png = client.get(f"/v1/jobs/{jid}/receptive-field.png", params={"row": 7, "col": 7})
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC), png.text
    for params, field_name in (({"row": 8}, "row"), ({"col": 8}, "col"), ({"row": -1}, "row")):
        r = client.get(f"/v1/jobs/{jid}/receptive-field.png", params=params)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["path"] == field_name

    url = f"/v1/jobs/{jid}/completions.png"
    a = client.get(url, params={"n": 3, "samples": 2, "seed": 4})
    assert a.status_code == 200 and a.content.startswith(PNG_MAGIC), a.text
    assert client.get(url, params={"n": 3, "samples": 2, "seed": 4}).content == a.content
    assert client.get(url, params={"n": 3, "samples": 2, "seed": 5}).content != a.content
    for params, field_name in (
        ({"temperature": 0}, "temperature"),
        ({"n": 17}, "n"),
        ({"samples": 9}, "samples"),
        ({"label": 1}, "label"),
    ):
        r = client.get(url, params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["errors"][0]["path"] == field_name


def test_a_random_order_cannot_complete_and_points_have_no_receptive_field_picture(
    client: TestClient,
) -> None:
    spec = {
        "model": "made",
        "dataset": "digits_bin",
        "params": {"hidden": [16], "order": "random"},
        "train": {"epochs": 1, "batch_size": 128},
    }
    jid = trained(client, spec)
    r = client.get(f"/v1/jobs/{jid}/completions.png", params={"n": 2, "samples": 1})
    assert r.status_code == 409, r.text
    assert "order natural" in r.json()["detail"] and "complete" in r.json()["capabilities"]
    r = client.get(f"/v1/jobs/{jid}/receptive-field.png", params={"row": 4, "col": 4})
    assert r.status_code == 200, r.text  # a random order has a receptive field too

    points = job(client, "nade", "moons")
    for url in ("receptive-field.png", "receptive-field", "completions.png"):
        r = client.get(f"/v1/jobs/{points}/{url}")
        assert r.status_code == 409 and "images" in r.json()["detail"], r.text


def test_a_model_without_the_capabilities_is_a_409(client: TestClient) -> None:
    jid = trained(
        client,
        {
            "model": "vae",
            "dataset": "digits_bin",
            "params": {"hidden": [8], "z_dim": 2},
            "train": {"epochs": 1, "batch_size": 128},
        },
    )
    for url in ("receptive-field.png", "completions.png"):
        r = client.get(f"/v1/jobs/{jid}/{url}")
        assert r.status_code == 409, r.text
        assert "receptive_field" not in r.json()["capabilities"]


def test_made_log_prob_work_counts_its_inference_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """log p of a MADE averaging over M masks costs M forwards per input: the bound on
    work counts them, so inputs that one mask could score are refused with 64."""
    import app.limits
    from app.api.generative import _log_prob_bounded

    one = built("made", "digits_bin", hidden=[16], num_masks=64)
    many = built("made", "digits_bin", hidden=[16], num_masks=64, inference_masks=64)
    assert one.parameters == many.parameters
    monkeypatch.setattr(app.limits, "MAX_INFERENCE_WORK", one.parameters * 100)
    x = torch.zeros(50, 64)
    assert _log_prob_bounded(one, x, None, 1, ["inputs"]).log_prob.shape == (50,)
    with pytest.raises(Problem) as refused:
        _log_prob_bounded(many, x, None, 1, ["inputs"])
    assert refused.value.status == 422
    assert "64 passes per input" in refused.value.detail
    assert refused.value.extra["errors"][0]["path"] == "inputs"
    assert _log_prob_bounded(many, x[:1], None, 1, ["inputs"]).log_prob.shape == (1,)


def test_a_receptive_field_too_costly_for_one_request_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worst receptive field a key holder can ask for is of the widest model: its
    FIELD_ROWS probe rows through every pass of one input's log p (a MADE's M masks) are
    bounded like any inference work, and a model over the bound is a 409 before any pass."""
    import app.api.autoregressive as routes
    from models.generative import FIELD_ROWS

    one = built("made", "digits_bin", hidden=[16], num_masks=64)
    many = built("made", "digits_bin", hidden=[16], num_masks=64, inference_masks=64)
    monkeypatch.setattr(routes, "MAX_INFERENCE_WORK", one.parameters * FIELD_ROWS * 10)
    field, _, _ = routes._field(one, 3, 3)
    assert field.shape == (8, 8)
    with pytest.raises(Problem) as refused:
        routes._field(many, 3, 3)
    assert refused.value.status == 409
    assert f"{FIELD_ROWS * 64:,} forward rows" in refused.value.detail
