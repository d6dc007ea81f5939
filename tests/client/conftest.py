"""One real stack (SQLite, embedded Redis, uvicorn, a Celery worker) for the client's and
the command's tests, and the jobs several tests read. The inference rate limit is low
(1 request/s per key, bursts of 10) so a real 429 with ``Retry-After`` is reachable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import deepzoo
from tests.stack import ADMIN_KEY, Stack

MOONS: dict[str, Any] = {
    "model": "mlp",
    "dataset": "moons",
    "params": {"hidden": [8]},
    "train": {"epochs": 2, "seed": 0},
}
FLOW: dict[str, Any] = {
    "model": "flow",
    "dataset": "moons",
    "params": {"transform": "maf", "layers": 2, "hidden": [16]},
    "train": {"epochs": 1, "batch_size": 128, "seed": 0},
}

# the optimizer lab: Adam from (-1.5, 2) on Rosenbrock, 20 steps (well under a second)
OPTIM: dict[str, Any] = {
    "model": "optim",
    "dataset": "rosenbrock",
    "optimizer": {"name": "adam", "lr": 0.05},
    "train": {"steps": 20, "seed": 0},
}


@pytest.fixture(scope="session")
def client_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("client-stack")
    env = {"DEEPZOO_INFERENCE_RATE": "1", "DEEPZOO_INFERENCE_BURST": "10"}
    s = Stack(tmp, f"sqlite:///{tmp / 'deepzoo.db'}", None, extra_env=env)
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def dz(client_stack: Stack) -> Iterator[deepzoo.Client]:
    with deepzoo.Client(client_stack.url, ADMIN_KEY, backoff=0.1) as c:
        yield c


@pytest.fixture(scope="session")
def moons_job(dz: deepzoo.Client) -> deepzoo.Job:
    """A tiny classifier, trained."""
    job = dz.wait(dz.submit(MOONS), timeout=180)
    assert job.status == "succeeded", job.error
    return job


@pytest.fixture(scope="session")
def flow_job(dz: deepzoo.Client) -> deepzoo.Job:
    """A tiny generative model (samples, log_prob), trained."""
    job = dz.wait(dz.submit(FLOW), timeout=180)
    assert job.status == "succeeded", job.error
    return job


@pytest.fixture(scope="session")
def optim_job(dz: deepzoo.Client) -> deepzoo.Job:
    """An optimizer's path over a landscape (the trajectory capability), trained."""
    job = dz.wait(dz.submit(OPTIM), timeout=180)
    assert job.status == "succeeded", job.error
    return job
