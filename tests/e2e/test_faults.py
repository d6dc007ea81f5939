"""Faults against real processes: two workers on one queue, a worker dying under the
other's nose, the API restarting under an SSE client, Redis losing its messages."""

from __future__ import annotations

import time

import pytest

from tests.stack import Stack, wait_until
from tests.support.e2e import SINE, assert_clean_curve

pytestmark = pytest.mark.e2e
SHORT = {**SINE, "train": {"epochs": 15}}


def test_two_workers_each_job_once_and_a_dead_workers_job_moves(stack: Stack) -> None:
    stack.start_worker("w2")
    try:
        jobs = [stack.post_job({**SHORT, "train": {"epochs": 15, "seed": i}}) for i in range(6)]
        done = [stack.wait_status(j["id"], {"succeeded", "failed"}, timeout=180) for j in jobs]
        assert all(d["status"] == "succeeded" and d["attempts"] == 1 for d in done), done
        workers = {d["provenance"]["worker"].split("@")[0] for d in done}  # node@host
        assert workers == {"w1", "w2"}, "both workers took jobs"
        for d in done:
            assert_clean_curve(stack, d["id"], "train_loss", 15)

        long = stack.post_job({**SINE, "train": {"epochs": 150, "seed": 9}})
        running = wait_until(
            lambda: (j := stack.job(long["id"]))["progress"]["step"] >= 3 and j,
            60,
            "the long job to run",
        )
        victim = running["provenance"]["worker"].split("@")[0]
        stack.kill_worker(victim)
        moved = stack.wait_status(long["id"], {"succeeded", "failed"}, timeout=180)
        assert moved["status"] == "succeeded" and moved["attempts"] == 2, moved
        assert moved["provenance"]["worker"] != running["provenance"]["worker"]
        assert_clean_curve(stack, long["id"], "train_loss", 150)
        if victim == "w1":
            stack.start_worker("w1")
    finally:
        if "w2" in stack.workers:
            stack.kill_worker("w2")
        if "w1" not in stack.workers:
            stack.start_worker("w1")


# the API's restart and the worker's kills are the same code on either database (both run
# test_training's kill and hand-back): these run on PostgreSQL, the deployed one
@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_sse_client_reconnects_across_an_api_restart(stack: Stack) -> None:
    job = stack.post_job({**SINE, "train": {"epochs": 60, "seed": 4}})
    first = stack.follow_events(job["id"], limit=4)
    stack.restart_api()
    rest = stack.follow_events(job["id"], last_id=first[-1][0])
    assert rest and rest[-1][1] == "status" and rest[-1][2]["status"] == "succeeded"
    everything = stack.follow_events(job["id"], last_id=0)
    assert [e[0] for e in first + rest] == [e[0] for e in everything]  # none missed or doubled


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_redis_loses_everything_and_no_job_is_lost(stack: Stack) -> None:
    """Redis (the embedded one) is killed and comes back empty while one job runs; a
    second job is posted while it is down."""
    running = stack.post_job({**SINE, "train": {"epochs": 60, "seed": 5}})
    wait_until(lambda: stack.job(running["id"])["progress"]["step"] >= 2, 60, "the job to run")
    stack.kill_redis(lose_data=True)
    posted = stack.client.post("/v1/jobs", json={**SHORT, "train": {"epochs": 15, "seed": 6}})
    assert posted.status_code == 201  # the database has it; the broker will get it later
    time.sleep(1.0)
    stack.start_redis()
    for jid in (running["id"], posted.json()["id"]):
        done = stack.wait_status(jid, {"succeeded", "failed"}, timeout=240)
        assert done["status"] == "succeeded", done
        assert done["attempts"] <= 2
        last = done["spec"]["train"]["epochs"]
        assert_clean_curve(stack, jid, "train_loss", last)


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_repeated_kill_9_over_many_jobs(stack: Stack) -> None:
    """Kill the worker mid-job three times while four jobs go through: every job
    succeeds, each kill costs exactly one attempt, and no curve has a gap or a double."""
    epochs, kills = 100, 3
    jobs = [stack.post_job({**SINE, "train": {"epochs": epochs, "seed": 20 + i}}) for i in range(4)]

    seen: dict[str, int] = {}

    def a_job_mid_training() -> bool:
        """A running job whose progress moved since the last look (so a live worker holds
        it, not a dead one whose lease has not gone stale yet)."""
        for j in jobs:
            now = stack.job(j["id"])
            step, before = now["progress"]["step"], seen.get(j["id"])
            seen[j["id"]] = step
            live = now["status"] == "running" and before is not None and step > before
            if live and 2 <= step < epochs - 20:
                return True
        return False

    for _ in range(kills):
        seen.clear()
        wait_until(a_job_mid_training, 120, "a job in the middle of training", 0.2)
        stack.kill_worker("w1")
        stack.start_worker("w1")
    done = [stack.wait_status(j["id"], {"succeeded", "failed"}, timeout=240) for j in jobs]
    assert all(d["status"] == "succeeded" for d in done), [d["error"] for d in done]
    assert sum(d["attempts"] for d in done) == len(jobs) + kills
    for d in done:
        assert_clean_curve(stack, d["id"], "train_loss", epochs)
        assert_clean_curve(stack, d["id"], "val_loss", epochs)
