"""The energy-based models' pictures and chain options over HTTP, on jobs trained in
process: ``filters.png`` and ``chain.png`` for an RBM and a Boltzmann machine (same seed,
same PNG), ``samples?gibbs_steps=`` (same seed, same samples), the 409 of a model without
the capability and the 422s naming the field at fault; and the worst cases of the bound
on work, refused (or answered) before any chain runs its full length."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from app.api.common import MAX_CHAIN_UPDATES
from tests.support.jobs import PNG_MAGIC, trained


def job(client: TestClient, model: str, dataset: str, **params: Any) -> str:
    return trained(
        client,
        {
            "model": model,
            "dataset": dataset,
            "params": params,
            "train": {"epochs": 1, "batch_size": 64},
        },
    )


def path(r: Any) -> str:
    assert r.status_code == 422, r.text
    return str(r.json()["errors"][0]["path"])


def png(client: TestClient, url: str, **params: Any) -> bytes:
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    assert r.content.startswith(PNG_MAGIC)
    return r.content


def test_rbm_filters_chain_and_gibbs_steps(client: TestClient) -> None:
    jid = job(client, "rbm", "digits_bin", hidden=12, gibbs_steps=20)
    base = f"/v1/jobs/{jid}"
    a = png(client, f"{base}/filters.png")
    assert png(client, f"{base}/filters.png") == a
    assert png(client, f"{base}/filters.png", n=4, order="index") != a
    assert path(client.get(f"{base}/filters.png", params={"n": 257})) == "n"
    assert path(client.get(f"{base}/filters.png", params={"order": "size"})) == "order"

    c = png(client, f"{base}/chain.png", seed=3, steps=50, frames=6)
    assert png(client, f"{base}/chain.png", seed=3, steps=50, frames=6) == c
    assert png(client, f"{base}/chain.png", seed=4, steps=50, frames=6) != c
    png(client, f"{base}/chain.png", steps=3, frames=32, spacing="linear")  # 4 distinct
    assert path(client.get(f"{base}/chain.png", params={"steps": 100_001})) == "steps"
    assert path(client.get(f"{base}/chain.png", params={"frames": 1})) == "frames"

    url = f"{base}/samples"
    s = client.get(url, params={"n": 3, "seed": 5, "gibbs_steps": 7}).json()
    assert s["gibbs_steps"] == 7 and len(s["samples"]) == 3
    assert client.get(url, params={"n": 3, "seed": 5, "gibbs_steps": 7}).json() == s
    # the params' gibbs_steps (20) when the request sets none
    default = client.get(url, params={"n": 3, "seed": 5}).json()
    assert default["gibbs_steps"] is None
    same = client.get(url, params={"n": 3, "seed": 5, "gibbs_steps": 20}).json()
    assert same["samples"] == default["samples"]
    assert path(client.get(url, params={"gibbs_steps": 0})) == "gibbs_steps"
    png(client, url, n=4, gibbs_steps=7, format="png")


def test_boltzmann_pictures_and_chains_on_an_exact_model(client: TestClient) -> None:
    jid = job(client, "boltzmann", "bars_stripes", sampler="exact")  # 16 units: exact draws
    base = f"/v1/jobs/{jid}"
    png(client, f"{base}/filters.png", n=16)
    c = png(client, f"{base}/chain.png", seed=1, steps=30)
    assert png(client, f"{base}/chain.png", seed=1, steps=30) == c
    most = MAX_CHAIN_UPDATES  # a sweep draws the 16 units as one block
    r = client.get(f"{base}/chain.png", params={"steps": most + 1})
    assert path(r) == "steps" and f"at most {most:,} sweeps" in r.json()["detail"]
    url = f"{base}/samples"
    exact = client.get(url, params={"n": 4, "seed": 2}).json()
    chained = client.get(url, params={"n": 4, "seed": 2, "gibbs_steps": 30}).json()
    assert client.get(url, params={"n": 4, "seed": 2, "gibbs_steps": 30}).json() == chained
    assert {v for row in chained["samples"] + exact["samples"] for v in row} <= {0.0, 1.0}


def test_a_model_without_chains_or_filters(client: TestClient) -> None:
    jid = job(client, "made", "digits_bin", hidden=[16], num_masks=2, inference_masks=2)
    base = f"/v1/jobs/{jid}"
    r = client.get(f"{base}/samples", params={"n": 2, "gibbs_steps": 5})
    assert path(r) == "gibbs_steps"
    for picture in ("filters.png", "chain.png"):
        r = client.get(f"{base}/{picture}")
        assert r.status_code == 409, r.text
        assert "sample" in r.json()["detail"]  # what it can do


def test_the_worst_chain_requests_answer_or_are_refused_fast(client: TestClient) -> None:
    """A 500-hidden RBM (32,564 parameters) whose params sample with 100,000 sweeps: the
    first samples request once ran the sampler at n = 1 and n = 2 with every sweep (about
    50 s at this size on 784 pixels) before any check. Now the work is checked first and
    the memory probe runs one sweep: the default's 200,000 sequential updates are a 422
    naming gibbs_steps, so are 10,000 samples of 1,000 sweeps (the request set
    gibbs_steps), each at once; the largest request the bound on updates allows runs
    once, not three times."""
    jid = job(
        client, "rbm", "digits_bin", hidden=500, gibbs_steps=100_000, ais_runs=2, ais_betas=10
    )
    url = f"/v1/jobs/{jid}/samples"
    start = time.perf_counter()
    assert path(client.get(url, params={"n": 1})) == "gibbs_steps"
    assert path(client.get(url, params={"n": 10_000, "gibbs_steps": 1000})) == "gibbs_steps"
    assert path(client.get(f"/v1/jobs/{jid}/chain.png", params={"steps": 100_000})) == "steps"
    assert time.perf_counter() - start < 3

    most = MAX_CHAIN_UPDATES // 2  # an RBM's sweep: two block updates
    start = time.perf_counter()
    r = client.get(url, params={"n": 1, "gibbs_steps": most})
    assert r.status_code == 200, r.text
    took = time.perf_counter() - start
    assert path(client.get(url, params={"n": 1, "gibbs_steps": most + 1})) == "gibbs_steps"
    assert took < 30, took
