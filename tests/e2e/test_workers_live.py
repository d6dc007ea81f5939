"""The live-worker registry against real Celery workers: a stack whose only worker serves
``cpu,auto`` refuses a ``cuda`` job with a 422 naming ``train.device``; a worker that
stops leaves the registry at once, and with no live worker a job is accepted."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from app.workers_live import read_registry, worker_ttl
from tests.stack import Stack, wait_until
from tests.support.e2e import SINE

pytestmark = pytest.mark.e2e
CUDA = {**SINE, "train": {"epochs": 5, "device": "cuda"}}


def _workers(stack: Stack) -> dict[str, Any]:
    r = stack.client.get("/v1/workers")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _registry_settled(stack: Stack) -> bool:
    """Every worker has had its advertisement period since the registry started."""
    settings = Settings(broker_url=stack.env["DEEPZOO_BROKER_URL"], worker_advertise_seconds=0.5)
    reg = read_registry(settings)
    return reg is not None and reg.now - reg.since >= worker_ttl(settings)


def test_a_cuda_job_on_a_cpu_only_stack_is_a_422_naming_train_device(stack: Stack) -> None:
    wait_until(lambda: _workers(stack)["workers"], 30, "the worker to advertise")
    wait_until(lambda: _registry_settled(stack), 30, "the registry to settle")
    live = _workers(stack)
    assert [w["name"].split("@")[0] for w in live["workers"]] == ["w1"]
    assert live["workers"][0]["queues"] == ["auto", "cpu"]
    assert live["queues"]["gpu"]["workers"] == 0 and live["queues"]["cpu"]["workers"] == 1
    assert stack.client.get("/readyz").json()["workers"] == 1

    r = stack.client.post("/v1/jobs", json=CUDA)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["errors"][0]["path"] == "train.device"
    assert "no live worker serves the gpu queue" in body["detail"]
    assert "location" not in r.headers  # no job was written
    # a non-admin key may not list the workers
    key = stack.client.post("/v1/keys", json={"name": "plain"}).json()["key"]
    plain = stack.client.get("/v1/workers", headers={"Authorization": f"Bearer {key}"})
    assert plain.status_code == 403


def test_a_stopped_worker_leaves_the_registry_and_jobs_are_accepted_meanwhile(
    stack: Stack,
) -> None:
    wait_until(lambda: _workers(stack)["workers"], 30, "the worker to advertise")
    stack.stop_worker("w1")
    try:
        gone = _workers(stack)  # withdrawn at shutdown, not after the TTL
        assert gone["workers"] == [] and gone["queues"]["cpu"]["workers"] == 0
        # nobody live: accepted, the reconciler's grace period decides (it may be a deploy)
        job = stack.post_job(CUDA)
        assert job["status"] == "queued"
        assert stack.client.post(f"/v1/jobs/{job['id']}/cancel").status_code in (200, 202)
    finally:
        stack.start_worker("w1")
    wait_until(lambda: _workers(stack)["workers"], 30, "the worker to advertise again")
