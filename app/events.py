"""Server-sent event streams that hold no database connection while they wait.

Two pieces, used by ``GET /v1/jobs/{id}/events`` (app/api/jobs.py):

- ``EventWatch``: one per event loop (one per API process). While streams are open it
  reads ``(event_seq, status)`` of every watched job in one short query per tick; a
  stream waits on that snapshot in memory and opens a short session of its own only to
  read events that exist. 200 streams cost one query a tick, not 200 sessions held.
- ``StreamSlots``: at most ``DEEPZOO_MAX_STREAMS_PER_KEY`` open streams per API key,
  counted in Redis (the broker) so that every API process draws on the same count: a
  sorted set per key whose members are the open streams, scored by when they expire.
  A stream refreshes its member while it lives (every keep-alive) and removes it when
  it ends or its client goes; a crashed API process's members expire within
  ``SLOT_TTL`` seconds. Should Redis be unreachable, each process counts its own
  streams for a few seconds (a process-local cap), as the inference rate limiter does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from app.config import get_settings
from app.db.models import Job
from app.db.session import get_sessionmaker
from app.problems import Problem

log = logging.getLogger("deepzoo.events")


@dataclass(frozen=True)
class JobState:
    event_seq: int
    status: str


GONE = JobState(-1, "gone")  # the job was deleted


def job_states(ids: list[str]) -> dict[str, JobState]:
    """``(event_seq, status)`` of these jobs, in one short session."""
    out: dict[str, JobState] = {}
    with get_sessionmaker()() as s:
        for i in range(0, len(ids), 500):
            rows = s.execute(
                select(Job.id, Job.event_seq, Job.status).where(Job.id.in_(ids[i : i + 500]))
            ).all()
            out.update({r.id: JobState(r.event_seq, r.status) for r in rows})
    return out


class EventWatch:
    """Polls the watched jobs' states for the streams of one event loop."""

    def __init__(self) -> None:
        self._polls: dict[str, list[float]] = {}  # job id -> poll interval of each stream
        self._states: dict[str, JobState] = {}
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0

    @contextmanager
    def watch(self, job_id: str, poll: float) -> Iterator[None]:
        self._polls.setdefault(job_id, []).append(poll)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield
        finally:
            polls = self._polls[job_id]
            polls.remove(poll)
            if not polls:
                del self._polls[job_id]
                self._states.pop(job_id, None)

    def state(self, job_id: str) -> JobState | None:
        """The job's state at the last tick (None before the first one)."""
        return self._states.get(job_id)

    async def _run(self) -> None:
        while self._polls:
            ids = list(self._polls)
            try:
                states = await run_in_threadpool(job_states, ids)
            except Exception as exc:  # the database is away: keep the last snapshot
                log.warning("event watch: reading job states failed (%s)", exc)
            else:
                for job_id in ids:
                    if job_id in self._polls:
                        self._states[job_id] = states.get(job_id, GONE)
                self.ticks += 1
            polls = [p for ps in self._polls.values() for p in ps]
            await asyncio.sleep(max(0.05, min(polls, default=1.0)))


_WATCHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EventWatch] = (
    weakref.WeakKeyDictionary()
)


def event_watch() -> EventWatch:
    loop = asyncio.get_running_loop()
    watch = _WATCHES.get(loop)
    if watch is None:
        watch = _WATCHES[loop] = EventWatch()
    return watch


# KEYS[1] = the key's set of open streams; ARGV = now, ttl, limit, member.
_ACQUIRE_LUA = """
local now, ttl, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 1000)
return 1
"""


@dataclass
class Slot:
    key: str
    member: str
    shared: bool  # counted in Redis (else in this process)
    released: bool = False


class StreamSlots:
    """Open SSE streams per API key, capped (see the module's docstring)."""

    SLOT_TTL = 60.0  # seconds a slot outlives its last refresh (a crashed process's)
    RETRY_REDIS_SECONDS = 5.0

    def __init__(self) -> None:
        self._local: dict[str, int] = {}
        self._lock = threading.Lock()
        self._redis: Any = None
        self._script: Any = None
        self._redis_url: str | None = None
        self._redis_down_until = 0.0

    def acquire(self, key: str) -> Slot:
        """A slot for one more stream of ``key``, or a 429 with Retry-After."""
        limit = get_settings().max_streams_per_key
        member = uuid.uuid4().hex
        shared = self._client()
        if shared is not None:
            try:
                ok = self._script(
                    keys=[self._zkey(key)],
                    args=[time.time(), self.SLOT_TTL, limit, member],
                    client=shared,
                )
            except Exception as exc:
                self._down(exc)
            else:
                if int(ok):
                    return Slot(key, member, shared=True)
                self._refuse(limit)
        with self._lock:
            if self._local.get(key, 0) >= limit:
                self._refuse(limit)
            self._local[key] = self._local.get(key, 0) + 1
        return Slot(key, member, shared=False)

    def refresh(self, slot: Slot) -> None:
        """Push the slot's expiry ``SLOT_TTL`` seconds ahead (a stream that lives on)."""
        if not slot.shared or slot.released or (client := self._client()) is None:
            return
        try:
            client.zadd(self._zkey(slot.key), {slot.member: time.time() + self.SLOT_TTL}, xx=True)
            client.pexpire(self._zkey(slot.key), int(self.SLOT_TTL * 1000) + 1000)
        except Exception as exc:
            self._down(exc)

    def release(self, slot: Slot) -> None:
        if slot.released:
            return
        slot.released = True
        if not slot.shared:
            with self._lock:
                left = self._local.get(slot.key, 0) - 1
                if left > 0:
                    self._local[slot.key] = left
                else:
                    self._local.pop(slot.key, None)
            return
        client = self._client()
        try:
            if client is not None:  # else the member expires after SLOT_TTL seconds
                client.zrem(self._zkey(slot.key), slot.member)
        except Exception as exc:  # the member expires after SLOT_TTL seconds anyway
            self._down(exc)

    def open_streams(self, key: str) -> int:
        """Open streams of ``key`` (Redis count, or this process's in the fallback)."""
        client = self._client()
        if client is not None:
            try:
                client.zremrangebyscore(self._zkey(key), "-inf", time.time())
                return int(client.zcard(self._zkey(key)))
            except Exception as exc:
                self._down(exc)
        with self._lock:
            return self._local.get(key, 0)

    @staticmethod
    def _zkey(key: str) -> str:
        return f"deepzoo:streams:{key}"

    @staticmethod
    def _refuse(limit: int) -> None:
        raise Problem(
            429,
            f"at most {limit} open event streams per API key; close one (or wait for its job "
            "to finish) and try again",
            headers={"Retry-After": "5"},
        )

    def _client(self) -> Any:
        url = get_settings().resolved_broker_url
        if not url.startswith(("redis://", "rediss://", "unix://")):
            return None
        if time.monotonic() < self._redis_down_until:
            return None
        with self._lock:
            if self._redis is None or self._redis_url != url:
                import redis

                self._redis = redis.Redis.from_url(
                    url, socket_timeout=0.5, socket_connect_timeout=0.5
                )
                self._script = self._redis.register_script(_ACQUIRE_LUA)
                self._redis_url = url
            return self._redis

    def _down(self, exc: Exception) -> None:
        self._redis_down_until = time.monotonic() + self.RETRY_REDIS_SECONDS
        log.warning("stream slots: Redis unavailable (%s); per-process counts for now", exc)


STREAM_SLOTS = StreamSlots()
