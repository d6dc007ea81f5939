"""pixelcnn, gated_pixelcnn and pixelrnn (Diagonal BiLSTM) over HTTP, trained in process:
seeded samples on grey levels (JSON, PNG grid), exact log-prob in nats and bits per
dimension (a conditional model's with labels and without: the marginal), and the 422s
naming the field at fault."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.jobs import PNG_MAGIC, trained

TINY = {"channels": 4, "layers": 1}


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("pixelcnn", TINY),
        ("gated_pixelcnn", {**TINY, "conditional": True}),
        ("pixelrnn", {"layer": "diagonal_bilstm", "hidden": 4, "layers": 1}),
    ],
)
def test_grey_images_sample_and_score_exactly(
    client: TestClient, model: str, params: dict[str, Any]
) -> None:
    spec = {
        "model": model,
        "dataset": "digits",
        "params": params,
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
    assert r.status_code == 422

    labelled = client.get(url, params={"n": 2, "label": 3})
    given = client.post(f"/v1/jobs/{jid}/log-prob", json={"inputs": samples, "labels": [3] * 3})
    if params.get("conditional"):
        assert labelled.status_code == given.status_code == 200, (labelled.text, given.text)
        assert given.json()["exact"] is True
        assert given.json()["log_prob"] != out["log_prob"]  # log p(x | y), not the marginal
        r = client.get(url, params={"n": 2, "label": 10})
        assert r.status_code == 422 and r.json()["errors"][0]["path"] == "label"
    else:
        assert labelled.status_code == 422 and labelled.json()["errors"][0]["path"] == "label"
        assert given.status_code == 422 and given.json()["errors"][0]["path"] == "labels"

    # the receptive field of pixel (5, 2): only pixels before it in raster order; pixelcnn
    # (7 × 7 mask A, one 3 × 3 mask-B block) misses (4, 6) and (4, 7), its blind spot, and
    # the rows more than 4 up; gated_pixelcnn sees (4, 6), pixelrnn's Diagonal BiLSTM every
    # pixel before (5, 2)
    r = client.get(f"/v1/jobs/{jid}/receptive-field", params={"row": 5, "col": 2})
    assert r.status_code == 200, r.text
    field = r.json()["field"]
    influenced = {(i, j) for i in range(8) for j in range(8) if field[i][j] > 0}
    before = {(i, j) for i in range(8) for j in range(8) if i * 8 + j < 5 * 8 + 2}
    assert influenced and influenced <= before and r.json()["influences"] == len(influenced)
    if model == "pixelcnn":
        assert not influenced & {(4, 6), (4, 7), *((0, j) for j in range(8))}
    elif model == "pixelrnn":
        assert influenced == before
    else:
        assert (4, 6) in influenced
    png = client.get(f"/v1/jobs/{jid}/receptive-field.png", params={"row": 7, "col": 7})
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC), png.text
    url = f"/v1/jobs/{jid}/completions.png"
    a = client.get(url, params={"n": 2, "samples": 2, "seed": 4})
    assert a.status_code == 200 and a.content.startswith(PNG_MAGIC), a.text
    assert client.get(url, params={"n": 2, "samples": 2, "seed": 4}).content == a.content
    labelled = client.get(url, params={"n": 2, "samples": 2, "label": 3})
    assert labelled.status_code == (200 if params.get("conditional") else 422), labelled.text


def test_data_that_is_not_grey_images_is_a_422_at_params(client: TestClient) -> None:
    r = client.post("/v1/jobs", json={"model": "pixelcnn", "dataset": "moons", "params": TINY})
    assert r.status_code == 422, r.text
