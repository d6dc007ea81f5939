"""The reconciler against a real database and a real Redis: lost messages are re-sent,
stale running jobs re-queued, live ones left alone."""

from __future__ import annotations

from datetime import timedelta

import redis
from sqlalchemy import update

from app.config import get_settings
from app.db.models import Job, utcnow
from app.db.session import session_scope
from app.reconciler import messages_in_broker, reconcile_once
from tests.workers.test_runner import job_row, new_job
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
    assert reconcile_once(settings) == {"requeued": 0, "resent": 1}
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
