"""The reconciler: the database is the truth, the broker only carries messages.

Every few seconds it re-queues ``running`` jobs whose heartbeat went stale (their
worker died) and re-sends ``queued`` jobs whose message is no longer in Redis
(lost with a broker restart). A job is tried at most ``max_attempts`` times:
the claim in the runner fails it with the reason after that.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import select, update

from app.config import Settings
from app.db.models import Job, utcnow
from app.db.ops import add_event
from app.db.session import session_scope
from app.queue import QUEUES, send_job

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
    if requeued or resent:
        log.info(
            "reconciler: %d stale running job(s) requeued, %d queued job(s) re-sent",
            requeued,
            resent,
        )
    return {"requeued": requeued, "resent": resent}
