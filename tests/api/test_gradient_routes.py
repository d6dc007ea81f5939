"""The gradient routes on recurrent jobs trained in process: the logged profile as JSON and
as a heat map, a vanishing gradient visible in both, the bound on rows, and the refusals
(a model without the capability, a job that has logged nothing yet); and predict's bound
on work, which counts a sequence's time steps."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.api import gradients as route
from models.data import load
from tests.support.jobs import PNG_MAGIC, SPEC, trained


def rnn_job(client: TestClient, epochs: int = 2, **params: Any) -> str:
    return trained(
        client,
        {
            "model": "rnn",
            "dataset": "seq_digits",
            "params": {"hidden": 8, "probe": 8, **params},
            "train": {"epochs": epochs, "batch_size": 128},
        },
    )


def pixels(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return np.asarray(imread(io.BytesIO(png), format="png"))[..., :3]


def test_a_vanishing_gradient_is_seen(client: TestClient) -> None:
    """A tanh cell whose W has spectral radius 0.3 on 8 steps: ‖∂L/∂c_1‖ is orders of
    magnitude below ‖∂L/∂c_8‖ in every logged row, and the picture spans the colour map
    from its darkest to its brightest."""
    job = rnn_job(client, cell="tanh", init="scaled", spectral_radius=0.3)
    body = client.get(f"/v1/jobs/{job}/gradients").json()
    assert body["steps"] == [1, 2] and body["positions"] == list(range(1, 9))
    for row, jac in zip(body["grad_norm"], body["jacobian_norm"], strict=True):
        assert row[0] < 1e-2 * row[-1]
        assert jac[-1] == pytest.approx(1.0) and jac[0] < 0.3**6
    metrics = client.get(f"/v1/jobs/{job}").json()["metrics"]
    assert metrics["jacobian_bound"] <= metrics["w_norm"]  # ‖W‖ · max σ', σ' ≤ 1
    assert metrics["grad_t8"] == body["grad_norm"][-1][-1]

    r = client.get(f"/v1/jobs/{job}/gradients.png")
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)
    image = pixels(r.content)
    brightness = image.sum(-1)
    # magma's ends: near black (0, 0, 0.02) for the smallest norm, pale yellow for the largest
    assert brightness.min() < 0.15 and bool(((image > [0.95, 0.9, 0.6]).all(-1)).any())
    r = client.get(f"/v1/jobs/{job}/gradients.png", params={"which": "jacobian"})
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)
    r = client.get(f"/v1/jobs/{job}/gradients.png", params={"which": "weights"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "which"


def test_rows_are_bounded(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    job = rnn_job(client, epochs=3, cell="gru")
    monkeypatch.setattr(route, "MAX_ROWS", 2)
    body = client.get(f"/v1/jobs/{job}/gradients").json()
    assert body["steps"] == [1, 3] and len(body["grad_norm"]) == 2


def test_refusals(client: TestClient, other_client: TestClient) -> None:
    mlp = trained(client, SPEC)
    r = client.get(f"/v1/jobs/{mlp}/gradients.png")
    assert r.status_code == 409 and "gradients" in r.json()["detail"]
    assert "predict" in r.json()["detail"]  # what it can do instead
    queued = client.post(
        "/v1/jobs", json={"model": "rnn", "dataset": "seq_digits", "params": {"hidden": 8}}
    ).json()["id"]
    r = client.get(f"/v1/jobs/{queued}/gradients")
    assert r.status_code == 409 and "no gradient profile yet" in r.json()["detail"]
    assert other_client.get(f"/v1/jobs/{queued}/gradients.png").status_code == 404


def test_predict_counts_every_time_step_as_work(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sequence of T steps runs the network T times: the bound on predict's work counts
    T forward rows per input (3 inputs of 8 steps are 24 rows, over a bound of 23)."""
    import app.limits

    job = rnn_job(client, cell="gru")
    rows = load("seq_digits").x_test[:3].tolist()
    ok = client.post(f"/v1/jobs/{job}/predict", json={"inputs": rows})
    assert ok.status_code == 200 and len(ok.json()["probs"]) == 3
    parameters = client.get(f"/v1/jobs/{job}").json()["provenance"]["parameters"]
    monkeypatch.setattr(app.limits, "MAX_INFERENCE_WORK", parameters * 23)
    r = client.post(f"/v1/jobs/{job}/predict", json={"inputs": rows})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "inputs"
    assert "8 time steps" in r.json()["detail"]
    assert client.post(f"/v1/jobs/{job}/predict", json={"inputs": rows[:2]}).status_code == 200


def test_the_adding_problem_at_any_length(client: TestClient) -> None:
    """``adding_<T>`` by name: the catalog says so, a job trains on ``adding_37`` and
    predicts sequences of 37 steps only; a length out of range or a malformed name is a 422
    naming ``dataset``, and a minibatch past the family's bound on a step's states one
    naming ``train.batch_size``."""
    patterns = client.get("/v1/models/rnn").json()["dataset_patterns"]
    assert "adding_<T>" in patterns and "1,000" in patterns["adding_<T>"]
    about = client.get("/v1/datasets/adding_37").json()
    assert about["kind"] == "builtin" and about["shape"] == [7000, 37, 2]

    job = trained(
        client,
        {
            "model": "rnn",
            "dataset": "adding_37",
            "params": {"hidden": 8, "probe": 4},
            "train": {"steps": 3, "batch_size": 32},
        },
    )
    body = client.get(f"/v1/jobs/{job}").json()
    assert body["dataset"] == "adding_37" and "grad_t37" in body["metrics"]
    x = load("adding_37").x_test[:2]
    r = client.post(f"/v1/jobs/{job}/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200 and len(r.json()["mean"]) == 2
    longer = torch.zeros(2, 50, 2).tolist()
    assert client.post(f"/v1/jobs/{job}/predict", json={"inputs": longer}).status_code == 422

    for name, says in [("adding_1001", "from 2 to 1,000"), ("adding_037", "adding_<T>")]:
        r = client.post("/v1/jobs", json={"model": "rnn", "dataset": name})
        assert r.status_code == 422 and r.json()["errors"][0]["path"] == "dataset", r.text
        assert says in r.json()["errors"][0]["message"]
    big = {"model": "rnn", "dataset": "adding_1000", "params": {"hidden": 256, "layers": 4}}
    r = client.post("/v1/jobs", json={**big, "train": {"batch_size": 128}})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "train.batch_size", r.text
    assert "at most 65 examples" in r.json()["detail"]
    r = client.post("/v1/jobs", json={**big, "params": {**big["params"], "probe": 128}})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "params", r.text
    assert "probe" in r.json()["detail"]
