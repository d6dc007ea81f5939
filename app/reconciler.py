"""The reconciler: the database is the truth, the broker only carries messages.

Every few seconds it re-queues ``running`` jobs whose heartbeat went stale (their
worker died) and re-sends ``queued`` jobs whose message is no longer in Redis
(lost with a broker restart). A job is tried at most ``max_attempts`` times:
the claim in the runner fails it with the reason after that. A queued job whose queue
no live worker has served for ``DEEPZOO_NO_WORKER_GRACE_SECONDS`` (a ``cuda`` job and
no GPU worker, or the last GPU worker gone) fails with a reason naming the queue
(``app/workers_live.py``), instead of waiting forever.

Each pass also drives the running sweeps (``app.sweeps.advance_all``): a sweep whose
children finished gets its next ones (TPE told their metric), and one with none left
is finished. Here rather than in the worker's job-finished hook because a child also
ends without a worker (cancelled while queued, failed for want of a worker, deleted),
because the worker imports neither the API's admission checks nor Optuna, and because a
pass every ``DEEPZOO_RECONCILE_SECONDS`` is soon enough for jobs that train for seconds
or more.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import func, select, update

from app.config import Settings
from app.db.models import Job, utcnow
from app.db.ops import add_event
from app.db.session import session_scope
from app.queue import QUEUES, send_job
from app.sweeps import advance_all
from app.workers_live import read_registry, unserved_queue_error

log = logging.getLogger("deepzoo.reconciler")
PRIORITY_SEP = "\x06\x16"


def messages_in_broker(url: str) -> set[str] | None:
    """Job ids with a message waiting in a queue or delivered but unacked; None if unreachable."""
    try:
        r = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        raw: list[Any] = []
        for q in QUEUES:
            for key in (q, *(f"{q}{PRIORITY_SEP}{p}" for p in (3, 6, 9))):
                raw.extend(r.lrange(key, 0, -1))
        raw.extend(r.hvals("unacked"))
    except redis.RedisError as exc:
        log.warning("broker unreachable: %s", exc)
        return None
    ids = set()
    for item in raw:
        try:
            msg = json.loads(item)
            if isinstance(msg, list):  # unacked: [message, exchange, routing_key]
                msg = msg[0]
            task_id = msg["headers"]["id"]
            ids.add(task_id.split(".", 1)[0])
        except (ValueError, KeyError, TypeError, IndexError):
            continue
    return ids


def reconcile_once(settings: Settings) -> dict[str, int]:
    now = utcnow()
    stale = now - timedelta(seconds=settings.heartbeat_timeout_seconds)
    requeued = resent = 0
    to_send: list[tuple[str, str, int]] = []
    with session_scope() as s:
        for job in s.scalars(select(Job).where(Job.status == "running", Job.heartbeat_at < stale)):
            res = s.execute(
                update(Job)
                .where(Job.id == job.id, Job.status == "running", Job.lease == job.lease)
                .values(
                    status="queued",
                    lease=None,
                    sent_at=now,
                    error=f"worker lost (attempt {job.attempts}); requeued",
                )
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                add_event(
                    s,
                    job.id,
                    "status",
                    {"status": "queued", "requeued": True, "attempts": job.attempts},
                )
                to_send.append((job.id, job.queue, job.attempts))
                requeued += 1
    unserved = fail_unserved(settings)
    in_broker = messages_in_broker(settings.resolved_broker_url)
    if in_broker is not None:
        window = now - timedelta(seconds=settings.queued_resend_seconds)
        with session_scope() as s:
            rows = s.execute(
                select(Job.id, Job.queue, Job.attempts, Job.sent_at, Job.created_at).where(
                    Job.status == "queued"
                )
            ).all()
            for job_id, queue, attempts, sent_at, created_at in rows:
                if job_id in in_broker or any(j == job_id for j, _, _ in to_send):
                    continue
                if (sent_at or created_at) < window:
                    to_send.append((job_id, queue, attempts))
                    resent += 1
    for job_id, queue, attempts in to_send:
        if send_job(job_id, queue, attempt_tag=f"{attempts}-r{int(now.timestamp())}"):
            with session_scope() as s:
                s.execute(update(Job).where(Job.id == job_id).values(sent_at=utcnow()))
    swept = advance_all()
    if requeued or resent or unserved or swept:
        log.info(
            "reconciler: %d stale running job(s) requeued, %d queued job(s) re-sent, "
            "%d failed for want of a worker, %d sweep child(ren) created",
            requeued,
            resent,
            unserved,
            swept,
        )
    return {"requeued": requeued, "resent": resent, "unserved": unserved, "swept": swept}


def fail_unserved(settings: Settings) -> int:
    """Fail queued jobs whose queue no live worker has served for the grace period and
    that have waited that long themselves (since their last send: a resumed or handed
    back job gets a fresh grace). Nothing happens while the registry is unreachable."""
    grace = settings.no_worker_grace_seconds
    with session_scope() as s:
        queues = list(s.scalars(select(Job.queue).where(Job.status == "queued").distinct()))
    if not queues:
        return 0
    reg = read_registry(settings)
    if reg is None:
        return 0
    failed = 0
    now = utcnow()
    waited = now - timedelta(seconds=grace)
    for queue in queues:
        unserved = reg.unserved_seconds(queue)
        if unserved < grace:
            continue
        with session_scope() as s:
            rows = s.execute(
                select(Job.id, Job.spec).where(
                    Job.status == "queued",
                    Job.queue == queue,
                    func.coalesce(Job.sent_at, Job.created_at) < waited,
                )
            ).all()
            for job_id, spec in rows:
                device = ((spec or {}).get("train") or {}).get("device", queue)
                error = unserved_queue_error(queue, str(device), unserved)
                res = s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == "queued", Job.lease.is_(None))
                    .values(status="failed", error=error, finished_at=now)
                )
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    add_event(s, job_id, "status", {"status": "failed", "error": error})
                    failed += 1
                    log.warning("job %s failed: %s", job_id, error)
    return failed
