"""Inference cost bounded by work (parameters × forward rows) and memory (chunked under
DEEPZOO_INFERENCE_MEMORY_MB), repeatable seeded passes, strict numbers, and what a model
answers. Real models throughout: built in process for the bounds, trained in process
(real database, no worker) for the routes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.api.common import bounded_predict, parse_inputs
from app.config import get_settings
from app.problems import Problem
from models.data import load
from models.registry import get_family
from tests.support.jobs import PNG_MAGIC, built, gan_job, trained


def refused(fn: Any) -> dict[str, Any]:
    with pytest.raises(Problem) as exc:
        fn()
    assert exc.value.status == 422
    return dict(exc.value.extra)


def test_the_25m_parameter_model_refuses_big_requests_quickly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    item = built("mc_dropout", "digits", hidden=[4096, 4096, 2048])
    assert item.parameters > 25_000_000
    x = torch.zeros(5_000, 64)
    start = time.perf_counter()
    # 5,000 inputs × 1,000 passes: once an 82 GB allocation and a 500
    errors = refused(lambda: bounded_predict(item, x, 1_000, 0))["errors"]
    assert [e["path"] for e in errors] == ["mc_samples", "inputs"]
    # the family's default T (100): the inputs are what to cut first
    errors = refused(lambda: bounded_predict(item, x, None, 0))["errors"]
    assert errors[0]["path"] == "inputs"
    assert time.perf_counter() - start < 1.0  # refused before any forward pass

    # under a 16 MB budget one input's 1,000 passes (about 50 MB) cannot run at all
    monkeypatch.setenv("DEEPZOO_INFERENCE_MEMORY_MB", "16")
    get_settings.cache_clear()
    errors = refused(lambda: bounded_predict(item, x[:1], 1_000, 0))["errors"]
    assert errors[0]["path"] == "mc_samples" and "memory" in errors[0]["message"]
    out, mc = bounded_predict(item, x[:3], 10, 0)  # small enough: answered
    assert mc == 10 and out["probs"].shape == (3, 10)


MEASURE = """
import json, resource, time, torch
from app.api.common import bounded_predict
from tests.support.jobs import built
item = built("mc_dropout", "digits", hidden=[256, 256])
x = torch.rand(__N__, 64) * 16
bounded_predict(item, x[:8], 10, 0)  # warm: kernels, thread pools, the memory probe
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
out, mc = bounded_predict(item, x, __T__, 0)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_mb": (after - before) / 1024, "seconds": seconds,
                  "rows": __N__ * __T__, "cost": item.costs["predict"].__dict__}))
"""


def measure_peak_growth(budget_mb: int, n: int, t: int) -> dict[str, Any]:
    """Peak RSS growth of one accepted predict, in a fresh process (ru_maxrss is a peak)."""
    env = {**os.environ, "DEEPZOO_INFERENCE_MEMORY_MB": str(budget_mb)}
    script = MEASURE.replace("__N__", str(n)).replace("__T__", str(t))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_an_accepted_large_request_stays_under_the_memory_budget() -> None:
    """mc_dropout [256, 256] on digits, 200 inputs × 1,000 passes: 200,000 rows, 920 MB of
    tensors in one batched forward, chunked under a 64 MB budget. The tensors the chunks
    hold stay under it; the process's peak RSS grows by the budget plus the allocator's
    overhead (measured 313 MB here; at the default 512 MB, 1,000 × 1,000 rows grew 482 MB
    where one batched forward took 4 GB)."""
    result = measure_peak_growth(64, 200, 1_000)
    unchunked_mb = result["rows"] * result["cost"]["per_row"] / 2**20
    assert unchunked_mb > 800, result
    assert result["growth_mb"] < 64 + 320 and result["growth_mb"] < unchunked_mb / 2, result


def test_strict_numbers_in_inputs() -> None:
    for raw in ([[True]], [["1.5"]], [[1.0, None]], [[1.0, [2.0]]]):
        with pytest.raises(Problem) as exc:
            parse_inputs(raw, (2,) if len(raw[0]) == 2 else (1,))
        assert exc.value.status == 422
        assert exc.value.extra["errors"][0]["path"] == "inputs[0]"
    with pytest.raises(Problem) as exc:
        parse_inputs([1.0, True], (1,), field="pool")
    assert exc.value.extra["errors"][0]["path"] == "pool[1]"
    assert parse_inputs([[1, 2.5]], (2,)).tolist() == [[1.0, 2.5]]


def path(r: Any) -> str:
    assert r.status_code == 422, r.text
    return str(r.json()["errors"][0]["path"])


def test_predictive_routes_are_seeded_and_bounded(client: TestClient) -> None:
    job = trained(
        client,
        {
            "model": "mc_dropout",
            "dataset": "sine_gap",
            "params": {"hidden": [16, 16], "mc_samples_eval": 2},
            "train": {"epochs": 2, "batch_size": 128},
        },
    )
    body = {"inputs": [[-2.0], [0.0], [2.0]], "mc_samples": 20}
    a = client.post(f"/v1/jobs/{job}/predict", json=body).json()
    assert a["seed"] == 0 and a["mc_samples"] == 20
    assert client.post(f"/v1/jobs/{job}/predict", json=body).json() == a
    b = client.post(f"/v1/jobs/{job}/predict", json={**body, "seed": 1}).json()
    assert b["seed"] == 1 and b["epistemic_var"] != a["epistemic_var"]
    assert client.post(f"/v1/jobs/{job}/predict", json={**body, "seed": 1}).json() == b

    cal = client.get(f"/v1/jobs/{job}/calibration", params={"mc_samples": 20, "seed": 3})
    assert cal.status_code == 200 and cal.json()["seed"] == 3
    again = client.get(f"/v1/jobs/{job}/calibration", params={"mc_samples": 20, "seed": 3})
    assert again.json() == cal.json()
    pool = {"pool": [[-2.0], [0.0], [2.0], [0.5]], "k": 2, "mc_samples": 20, "seed": 5}
    acq = client.post(f"/v1/jobs/{job}/acquire", json=pool).json()
    assert acq["seed"] == 5 and client.post(f"/v1/jobs/{job}/acquire", json=pool).json() == acq
    png = client.get(f"/v1/jobs/{job}/plot.png", params={"points": 20, "seed": 2})
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)

    # 10,000 inputs × 1,000 passes is 10M forward rows: a 422 naming mc_samples, not a 413
    many = {"inputs": [[0.0]] * 10_000, "mc_samples": 1_000}
    r = client.post(f"/v1/jobs/{job}/predict", json=many)
    assert path(r) == "mc_samples" and r.json()["errors"][1]["path"] == "inputs"
    r = client.get(f"/v1/jobs/{job}/plot.png", params={"points": 2000, "mc_samples": 1000})
    assert r.status_code == 200  # 2M rows of a tiny model: within the bounds, chunked
    r = client.post(f"/v1/jobs/{job}/predict", json={"inputs": [[True]]})
    assert path(r) == "inputs[0]"
    r = client.post(f"/v1/jobs/{job}/acquire", json={"pool": [["0.5"]], "k": 1})
    assert path(r) == "pool[0]"


def test_ensemble_echoes_its_members_and_overflow_is_a_422(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = trained(
        client,
        {
            "model": "ensemble",
            "dataset": "sine_gap",
            "params": {"members": 3, "hidden": [8]},
            "train": {"epochs": 1, "batch_size": 128},
        },
    )
    r = client.post(f"/v1/jobs/{job}/predict", json={"inputs": [[0.0]], "mc_samples": 50})
    assert r.status_code == 200 and r.json()["mc_samples"] == 3
    r = client.post(f"/v1/jobs/{job}/predict", json={"inputs": [[0.0], [3e38]]})
    assert path(r) == "inputs[1]" and "NaN or inf" in r.json()["detail"]

    import app.limits

    monkeypatch.setattr(app.limits, "MAX_INFERENCE_WORK", 10)  # a service with little room
    r = client.post(f"/v1/jobs/{job}/predict", json={"inputs": [[0.0]], "mc_samples": 50})
    assert path(r) == "inputs" and "multiply-adds" in r.json()["detail"]  # T is not the cost
    r = client.get(f"/v1/jobs/{job}/calibration")  # the split is no request field: 409
    assert r.status_code == 409 and "test split" in r.json()["detail"], r.text


def test_multitask_views_answer_409_naming_what_it_can(client: TestClient) -> None:
    job = trained(
        client,
        {"model": "multitask", "dataset": "multitask_synth", "train": {"epochs": 1}},
    )
    width = load("multitask_synth").info.input_shape[0]
    for r in (
        client.post(f"/v1/jobs/{job}/acquire", json={"pool": [[0.0] * width], "k": 1}),
        client.get(f"/v1/jobs/{job}/calibration"),
        client.get(f"/v1/jobs/{job}/reliability.png"),
    ):
        assert r.status_code == 409, r.text
        assert r.json()["capabilities"] == ["predict"] and "it can: predict" in r.text


def test_catalog_lists_encode_decode_interpolate() -> None:
    from app.api.catalog import model_out

    assert model_out(get_family("vae")).capabilities == [
        "decode", "encode", "interpolate", "log_prob", "sample",
    ]  # fmt: skip
    assert model_out(get_family("gan")).capabilities == ["decode", "interpolate", "sample"]
    assert model_out(get_family("mc_dropout")).capabilities == ["predict"]


def test_generative_routes_are_bounded(client: TestClient) -> None:
    job = trained(
        client,
        {
            "model": "vae",
            "dataset": "digits",
            "params": {"hidden": [16], "z_dim": 2, "k_eval": 2, "grad_var_samples": 2},
            "train": {"epochs": 1, "batch_size": 256},
        },
    )
    start = time.perf_counter()
    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 10_000, "format": "png"})
    assert path(r) == "n" and time.perf_counter() - start < 5
    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 256, "format": "png"})
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)
    r = client.get(f"/v1/jobs/{job}/samples", params={"n": 10_000})
    assert r.status_code == 200 and len(r.json()["samples"]) == 10_000

    x = load("digits").x_test[:1].tolist()
    r = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": x * 2_000, "k": 5_000})
    assert path(r) == "k" and r.json()["errors"][1]["path"] == "inputs"
    lp = client.post(f"/v1/jobs/{job}/log-prob", json={"inputs": x * 3, "k": 20}).json()
    assert len(lp["log_prob"]) == 3 and lp["k"] == 20
    r = client.post(f"/v1/jobs/{job}/encode", json={"inputs": [[True] * 64]})
    assert path(r) == "inputs[0]"
    r = client.post(f"/v1/jobs/{job}/decode", json={"latents": [[0.0, 0.0]], "labels": [1]})
    assert path(r) == "labels"
    r = client.post(f"/v1/jobs/{job}/predict", json={"inputs": x})
    assert r.status_code == 409
    assert r.json()["capabilities"] == ["decode", "encode", "interpolate", "log_prob", "sample"]


def test_conditional_gan_decode_names_labels(client: TestClient) -> None:

    job = gan_job(client, "digits", conditional=True)
    r = client.post(f"/v1/jobs/{job}/decode", json={"latents": [[0.0] * 4]})
    assert path(r) == "labels"
    r = client.post(f"/v1/jobs/{job}/decode", json={"latents": [[0.0] * 4], "labels": [3]})
    assert r.status_code == 200 and len(r.json()["outputs"]) == 1
    r = client.post(f"/v1/jobs/{job}/encode", json={"inputs": [[0.0] * 64]})
    assert r.status_code == 409 and "it can: decode, interpolate, sample" in r.json()["detail"]
