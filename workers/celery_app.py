"""The workers' Celery app. No CUDA and no torch at import: the prefork pool forks."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from celery import Celery, bootsteps
from celery.signals import worker_init, worker_process_init, worker_shutting_down

from app.config import get_settings
from app.queue import TASK_NAME, celery_config
from app.workers_live import advertise, withdraw

app = Celery("deepzoo")
app.conf.update(celery_config(get_settings()))


class ReplaceChildPromptly(bootsteps.StartStopStep):
    """Fork the next per-job child within 0.1 s of the last one exiting.

    With ``worker_max_tasks_per_child=1`` every job ends its process; the prefork pool
    notices the exit on a 5 s timer here (measured: a job arriving just after another
    waited up to ~4.8 s for its process). Maintaining the pool every 0.1 s costs a loop
    over one child and brings POST-to-running back to milliseconds.
    """

    requires = frozenset({"celery.worker.components:Pool", "celery.worker.components:Hub"})

    def start(self, worker: Any) -> None:
        hub, pool = getattr(worker, "hub", None), getattr(worker, "pool", None)
        if hub is not None and pool is not None and hasattr(pool, "maintain_pool"):
            hub.call_repeatedly(0.1, pool.maintain_pool)


log = logging.getLogger("deepzoo.worker")


class Advertise(bootsteps.StartStopStep):
    """Write this worker's entry in the live-worker registry (``app/workers_live.py``):
    its node name and the queues it consumes, every ``DEEPZOO_WORKER_ADVERTISE_SECONDS``
    on the worker's own timer, from the main process (never a per-job child). The API
    answers 422 to a job for a queue nobody serves, and the reconciler fails a queued
    job whose queue went unserved for the grace period."""

    requires = frozenset({"celery.worker.components:Timer"})

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.node = ""
        self.started_at: float | None = None
        self.failing = False
        # the Timer stops after this step: a tick due after ``stop`` must not write the
        # entry back once it is withdrawn, nor one already running finish after it
        self.lock = threading.Lock()
        self.stopped = False
        self.tref: Any = None

    def queues(self, worker: Any) -> list[str]:
        return sorted(worker.app.amqp.queues.consume_from or ())

    def start(self, worker: Any) -> None:
        self.node = str(worker.hostname)
        self.advertise(worker)
        self.tref = worker.timer.call_repeatedly(
            get_settings().worker_advertise_seconds, self.advertise, (worker,)
        )

    def advertise(self, worker: Any) -> None:
        with self.lock:
            if not self.stopped:
                self._advertise(worker)

    def _advertise(self, worker: Any) -> None:
        try:
            settings, queues = get_settings(), self.queues(worker)
            self.started_at = advertise(settings, self.node, queues, self.started_at)
            if self.failing:
                log.info("worker registry reachable again")
            self.failing = False
        except Exception as exc:  # the broker is down: Celery itself reconnects
            if not self.failing:
                log.warning("could not advertise this worker: %s", exc)
            self.failing = True

    def stop(self, worker: Any) -> None:
        with self.lock:
            self.stopped = True
        if self.tref is not None:
            self.tref.cancel()
        if self.node:
            try:
                withdraw(get_settings(), self.node, self.queues(worker))
            except Exception as exc:
                log.warning("could not withdraw this worker from the registry: %s", exc)


app.steps["worker"].add(ReplaceChildPromptly)
app.steps["worker"].add(Advertise)
HANDBACK_SIGNAL = signal.SIGUSR2
_worker: Any = None  # the WorkController, to reach the pool's children at shutdown


@worker_init.connect
def _preload(sender: Any = None, **_: object) -> None:
    # Import torch and the zoo once in the parent: every per-job child is forked with them
    # loaded, so a job starts in milliseconds. Importing torch does not initialise CUDA.
    global _worker
    _worker = sender
    from workers.runner import warm_up

    warm_up()


@worker_process_init.connect
def _child_init(**_: object) -> None:
    # A forked child must not use the parent's connections; keep the Engine itself (its
    # dialect is initialised and its statement cache warm) and drop the inherited pool.
    from app.db.session import get_engine
    from workers.runner import request_handback

    get_engine().dispose(close=False)
    signal.signal(HANDBACK_SIGNAL, lambda *_: request_handback())


@worker_shutting_down.connect
def _hand_back_jobs(**_: object) -> None:
    """SIGTERM (a deploy, ``docker stop``): ask each running job to checkpoint and go back
    to the queue for another worker, instead of running on for hours under a warm
    shutdown or being killed mid-step."""
    pool = getattr(getattr(_worker, "pool", None), "_pool", None)
    for proc in getattr(pool, "_pool", None) or []:
        pid = getattr(proc, "pid", None)
        if pid:
            try:
                os.kill(pid, HANDBACK_SIGNAL)
            except ProcessLookupError:
                continue
            log.info("asked child %s to hand its job back", pid)


@app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def train_job(self: Any, job_id: str) -> str:
    from workers.runner import run_job

    return run_job(job_id, worker=getattr(self.request, "hostname", None))
