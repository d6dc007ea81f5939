"""Which workers are alive and which queues they serve: a registry in the broker's Redis.

Every Celery worker's main process writes, every ``DEEPZOO_WORKER_ADVERTISE_SECONDS``
(``workers/celery_app.py``):

- ``deepzoo:worker:<node>``: JSON (node name, queues, host, pid, device setting, when it
  started), with a TTL of three periods: a worker that dies, however, drops out of the
  registry within that TTL; a worker stopping cleanly deletes its key at once;
- ``deepzoo:queue-seen:<queue>``: the Redis server's time of the last advertisement by a
  worker serving that queue (no TTL to speak of: it says how long a queue went unserved).

``deepzoo:registry-since`` holds the Redis time the registry was first read or written
(SET NX): after Redis loses its data, every age restarts from there, so no queue looks
unserved for longer than the registry has been watched.

Why not Celery's ``inspect`` broadcast: it waits for replies for a fixed timeout, misses
busy or ``--without-mingle`` workers, and costs every worker a message per question.
Keys with a TTL answer in one round trip and every reader agrees on them. Every
timestamp is the Redis server's clock, so hosts' clocks never disagree.

Two rules use it (docs/reliability.md):

- ``check_served`` (POST /v1/jobs): 422 naming ``train.device`` when some worker is live
  and none has served the job's queue within ``DEEPZOO_NO_WORKER_GRACE_SECONDS``. No live
  worker at all (``make run`` or compose still starting, every worker restarting), or the
  broker unreachable: the job is accepted and the next rule decides.
- ``unserved_queue_error`` (the reconciler): a queued job fails with a reason naming its
  queue and device once that queue has had no live worker for the grace period and the
  job itself has waited that long.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import redis

from app.config import Settings, get_settings
from app.queue import queue_for
from app.refusals import Refused

log = logging.getLogger("deepzoo.workers_live")
WORKER_PREFIX = "deepzoo:worker:"
SEEN_PREFIX = "deepzoo:queue-seen:"
SINCE_KEY = "deepzoo:registry-since"
SEEN_TTL = 30 * 86_400  # keys for queues nobody serves any more go away eventually
DEVICE_FOR_QUEUE = {"gpu": "cuda", "cpu": "cpu", "auto": "auto"}


def worker_ttl(settings: Settings) -> int:
    return max(2, int(3 * settings.worker_advertise_seconds + 1))


def _redis(settings: Settings) -> redis.Redis:
    return _client(settings.resolved_broker_url)


@lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    """One connection pool per URL (a POST must not open a connection of its own; redis-py
    resets the pool in a forked child). Short timeouts: a dead broker costs a POST 1 s."""
    return redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


def _now(r: redis.Redis) -> float:
    sec, usec = r.time()
    return float(sec) + float(usec) / 1e6


def advertise(
    settings: Settings, node: str, queues: list[str], started_at: float | None = None
) -> float:
    """One worker's advertisement (raises ``redis.RedisError`` when Redis is down); returns
    ``started_at`` (this advertisement's time when None: the first one)."""
    r = _redis(settings)
    now = _now(r)
    started_at = now if started_at is None else started_at
    entry = {
        "name": node,
        "queues": sorted(queues),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "device": settings.device,
        "started_at": started_at,
        "seen_at": now,
    }
    pipe = r.pipeline(transaction=False)
    pipe.set(SINCE_KEY, now, nx=True)
    pipe.set(WORKER_PREFIX + node, json.dumps(entry), ex=worker_ttl(settings))
    for q in queues:
        pipe.set(SEEN_PREFIX + q, now, ex=SEEN_TTL)
    pipe.execute()
    return started_at


def withdraw(settings: Settings, node: str, queues: list[str]) -> None:
    """A worker stopping cleanly: out of the registry now, not after its TTL."""
    r = _redis(settings)
    now = _now(r)
    pipe = r.pipeline(transaction=False)
    pipe.delete(WORKER_PREFIX + node)
    for q in queues:
        pipe.set(SEEN_PREFIX + q, now, ex=SEEN_TTL)
    pipe.execute()


@dataclass
class Registry:
    now: float  # Redis server time of this reading
    since: float  # when the registry was first watched
    workers: list[dict[str, Any]] = field(default_factory=list)
    last_served: dict[str, float] = field(default_factory=dict)

    def live_queues(self) -> set[str]:
        return {q for w in self.workers for q in w.get("queues", [])}

    def unserved_seconds(self, queue: str) -> float:
        """0 when a live worker serves ``queue``; else for how long none has (at most as
        long as the registry has been watched)."""
        if queue in self.live_queues():
            return 0.0
        return max(0.0, self.now - max(self.last_served.get(queue, self.since), self.since))

    def ever_served(self, queue: str) -> bool:
        return queue in self.last_served or queue in self.live_queues()


def read_registry(settings: Settings | None = None) -> Registry | None:
    """The live workers and each queue's last service; None when Redis is unreachable."""
    settings = settings or get_settings()
    try:
        r = _redis(settings)
        now = _now(r)
        pipe = r.pipeline(transaction=False)
        pipe.set(SINCE_KEY, now, nx=True)
        pipe.get(SINCE_KEY)
        since = float(pipe.execute()[1] or now)
        names = sorted(r.scan_iter(match=WORKER_PREFIX + "*", count=1000))
        seen_keys = sorted(r.scan_iter(match=SEEN_PREFIX + "*", count=1000))
        raw = r.mget(names) if names else []
        seen = r.mget(seen_keys) if seen_keys else []
    except (redis.RedisError, ValueError) as exc:
        log.warning("worker registry unreachable: %s", exc)
        return None
    workers = []
    for item in raw:
        try:
            if item is not None:
                workers.append(json.loads(item))
        except ValueError:
            continue
    last_served = {}
    for key, value in zip(seen_keys, seen, strict=True):
        try:
            if value is not None:
                last_served[key.decode().removeprefix(SEEN_PREFIX)] = float(value)
        except ValueError:
            continue
    return Registry(now=now, since=since, workers=workers, last_served=last_served)


class NoLiveWorker(Refused):
    """Workers are live and none has served the queue a job's ``train.device`` needs."""

    def __init__(self, queue: str, device: str, live: str) -> None:
        message = (
            f"no live worker serves the {queue} queue that device {device!r} needs "
            f"(live workers serve: {live}); start a worker with -Q {queue} or choose "
            "another device"
        )
        super().__init__(
            f"train.device: {message}", field="train.device", message=message, kind="no_worker"
        )
        self.queue, self.device = queue, device


def check_served(device: str, settings: Settings | None = None) -> None:
    """POST /v1/jobs: :class:`NoLiveWorker` (a 422 naming ``train.device`` in the API)
    when workers are live and none has served this device's queue within the grace
    period."""
    settings = settings or get_settings()
    queue = queue_for(device)
    reg = read_registry(settings)
    if reg is None or not reg.workers:
        return  # broker down, or nothing has advertised yet: accept, the reconciler decides
    if reg.now - reg.since < worker_ttl(settings):
        return  # the registry has just (re)started: not every worker has advertised yet
    unserved = reg.unserved_seconds(queue)
    if unserved == 0.0:
        return
    if reg.ever_served(queue) and unserved < settings.no_worker_grace_seconds:
        return  # its worker is restarting (a deploy): the job waits for it
    live = ", ".join(sorted(reg.live_queues())) or "none"
    raise NoLiveWorker(queue, device, live)


def unserved_queue_error(queue: str, device: str, unserved: float) -> str:
    return (
        f"no worker served the {queue} queue (train.device={device}) for {unserved:.0f}s; "
        f"start a worker with -Q {queue}, then resume the job, or clone it with another "
        "train.device"
    )
