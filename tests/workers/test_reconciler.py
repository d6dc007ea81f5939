"""The reconciler against a real database and a real Redis: lost messages are re-sent,
stale running jobs re-queued, live ones left alone, jobs for a queue no worker serves
failed after the grace period (workers advertise through the real registry functions)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from sqlalchemy import select, update

from app.config import get_settings
from app.db.models import Job, JobEvent, utcnow
from app.db.session import session_scope
from app.problems import Problem
from app.reconciler import fail_unserved, messages_in_broker, reconcile_once
from app.workers_live import (
    SEEN_PREFIX,
    SINCE_KEY,
    WORKER_PREFIX,
    advertise,
    read_registry,
    withdraw,
    worker_ttl,
)
from tests.support.jobs import TINY, job_row, new_job
from workers.runner import claim


def _age(job_id: str, **columns: object) -> None:
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**columns))


def test_lost_message_is_resent_and_a_waiting_one_is_not() -> None:
    settings = get_settings()
    r = redis.Redis.from_url(settings.resolved_broker_url)
    waiting, lost = new_job(), new_job()
    assert messages_in_broker(settings.resolved_broker_url) == {waiting, lost}
    r.delete("auto")  # the broker loses both messages ...
    new_job_id = new_job()  # ... but not this one
    old = utcnow() - timedelta(seconds=settings.queued_resend_seconds + 1)
    _age(lost, sent_at=old)  # lost long enough ago to be re-sent
    assert reconcile_once(settings) == {"requeued": 0, "resent": 1, "unserved": 0, "swept": 0}
    assert messages_in_broker(settings.resolved_broker_url) == {lost, new_job_id}
    # 'waiting' was sent just now (in flight): it is re-sent only after the window
    _age(waiting, sent_at=old)
    assert reconcile_once(settings)["resent"] == 1
    assert waiting in (messages_in_broker(settings.resolved_broker_url) or set())


def test_stale_running_job_is_requeued_and_live_one_left() -> None:
    settings = get_settings()
    stale_job, live_job = new_job(), new_job()
    assert claim(stale_job, "dead-worker", settings) is not None
    assert claim(live_job, "live-worker", settings) is not None
    _age(
        stale_job, heartbeat_at=utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 1)
    )
    assert reconcile_once(settings)["requeued"] == 1
    requeued = job_row(stale_job)
    assert requeued.status == "queued" and requeued.lease is None and requeued.attempts == 1
    assert job_row(live_job).status == "running"
    assert claim(stale_job, "new-worker", settings) is not None
    assert job_row(stale_job).attempts == 2


def _registry_aged(seconds: float, queue: str | None = None) -> None:
    """The registry watched (or ``queue`` last served) ``seconds`` ago, by Redis's clock."""
    r = redis.Redis.from_url(get_settings().resolved_broker_url)
    sec, usec = r.time()
    then = sec + usec / 1e6 - seconds
    r.set(SEEN_PREFIX + queue if queue else SINCE_KEY, then)


def _cuda_job() -> str:
    return new_job({**TINY, "train": {**TINY["train"], "device": "cuda"}})


def test_a_job_for_a_queue_no_worker_serves_fails_after_the_grace_period() -> None:
    """Only a CPU worker: a cuda job fails once the gpu queue has gone unserved for the
    grace period and the job has waited that long; a cpu job stays."""
    settings = get_settings()
    grace = settings.no_worker_grace_seconds
    cuda, cpu = _cuda_job(), new_job()  # no worker has advertised yet: both accepted
    advertise(settings, "cpu@test", ["auto", "cpu"])
    assert reconcile_once(settings)["unserved"] == 0  # the registry is young
    _registry_aged(grace + 1)
    old = utcnow() - timedelta(seconds=grace + 1)
    _age(cuda, sent_at=old)
    _age(cpu, sent_at=old)
    assert reconcile_once(settings)["unserved"] == 1
    failed = job_row(cuda)
    assert failed.status == "failed" and failed.finished_at is not None
    assert failed.error is not None and "gpu queue" in failed.error
    assert "train.device=cuda" in failed.error and "-Q gpu" in failed.error
    assert job_row(cpu).status == "queued"
    with session_scope() as s:
        events = s.scalars(select(JobEvent.data).where(JobEvent.job_id == cuda)).all()
    assert events[-1] == {"status": "failed", "error": failed.error}
    # now live workers exist and none serves gpu: a new cuda job is refused at once
    with pytest.raises(Problem) as exc:
        _cuda_job()
    assert exc.value.status == 422
    assert exc.value.extra["errors"][0]["path"] == "train.device"
    assert "no live worker serves the gpu queue" in exc.value.detail
    # and so is resuming the failed one (it would wait for the same absent worker)
    from app.api.jobs import resume_job
    from app.auth import Principal

    with session_scope() as s:
        owner = s.get(Job, cuda).owner  # type: ignore[union-attr]
        with pytest.raises(Problem) as exc:
            resume_job(cuda, Principal("k", owner, True), s)
    assert exc.value.status == 422
    assert exc.value.extra["errors"][0]["path"] == "train.device"
    assert job_row(cuda).status == "failed"


def test_when_the_last_gpu_worker_leaves_its_jobs_fail_after_the_grace_period() -> None:
    settings = get_settings()
    grace = settings.no_worker_grace_seconds
    advertise(settings, "gpu@test", ["auto", "gpu"])
    advertise(settings, "cpu@test", ["auto", "cpu"])
    _registry_aged(grace + 1)
    waiting = _cuda_job()
    _age(waiting, sent_at=utcnow() - timedelta(seconds=grace + 1))
    assert reconcile_once(settings)["unserved"] == 0  # the GPU worker is live
    withdraw(settings, "gpu@test", ["auto", "gpu"])  # a deploy stops it
    assert reconcile_once(settings)["unserved"] == 0  # it may come back within the grace
    restarting = _cuda_job()  # accepted: a GPU worker served the queue moments ago
    _registry_aged(grace + 1, queue="gpu")  # ... but it never came back
    assert reconcile_once(settings)["unserved"] == 1
    assert job_row(waiting).status == "failed" and "gpu queue" in (job_row(waiting).error or "")
    assert job_row(restarting).status == "queued"  # it has its own grace
    _age(restarting, sent_at=utcnow() - timedelta(seconds=grace + 1))
    assert reconcile_once(settings)["unserved"] == 1
    assert job_row(restarting).status == "failed"


def test_nothing_fails_while_the_registry_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    job = _cuda_job()
    _age(job, sent_at=utcnow() - timedelta(days=1))
    monkeypatch.setenv("DEEPZOO_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing listens
    get_settings.cache_clear()
    assert fail_unserved(get_settings()) == 0
    assert job_row(job).status == "queued"
    assert settings.no_worker_grace_seconds == 300  # the default


def test_a_worker_entry_has_a_ttl_keeps_its_start_and_goes_at_withdrawal() -> None:
    settings = get_settings()
    first = advertise(settings, "w@test", ["cpu"])
    assert advertise(settings, "w@test", ["cpu"], first) == first
    r = redis.Redis.from_url(settings.resolved_broker_url)
    assert 0 < r.ttl(WORKER_PREFIX + "w@test") <= worker_ttl(settings)
    reg = read_registry(settings)
    assert reg is not None and [w["name"] for w in reg.workers] == ["w@test"]
    assert reg.workers[0]["started_at"] == first and reg.workers[0]["queues"] == ["cpu"]
    assert reg.unserved_seconds("cpu") == 0.0 and reg.live_queues() == {"cpu"}
    withdraw(settings, "w@test", ["cpu"])
    after = read_registry(settings)
    assert after is not None and after.workers == [] and after.ever_served("cpu")
