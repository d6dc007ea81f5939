"""The Celery configuration shared by the API, which sends tasks, and the workers, which
consume them.

``celery_config`` and the queue names are the one definition both sides use
(``workers.celery_app`` builds the worker's app from them). The API's client
(``client``/``send_job``) sends ``train_job`` by name, so the API never imports workers/;
the runner sends through the same client when it requeues a job.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from app.config import Settings, get_settings

log = logging.getLogger("deepzoo.queue")
QUEUES = ("cpu", "gpu", "auto")
TASK_NAME = "train_job"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Settings shared by the API's client and the workers (DESIGN §5)."""
    # Redis redelivers an unacked message after the visibility timeout: keep it above the
    # longest job so a healthy long job is never delivered twice by the broker alone.
    visibility = int(settings.max_job_minutes * 60 + 3600)
    transport = {"visibility_timeout": visibility}
    return {
        "broker_url": settings.resolved_broker_url,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "accept_content": ["json"],
        "task_serializer": "json",
        "result_serializer": "json",
        "task_ignore_result": True,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_max_tasks_per_child": 1,
        # one direct exchange per queue: a message reaches exactly the queue it names
        "task_queues": [Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES],
        "task_default_queue": "auto",
        "task_default_exchange": "auto",
        "task_default_routing_key": "auto",
        "task_time_limit": int(settings.max_job_minutes * 60 + 900),
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
    }


@lru_cache
def client() -> Celery:
    settings = get_settings()
    app = Celery("deepzoo-api")
    app.conf.update(celery_config(settings))
    # The API must not hang on a dead broker: the job is in the database and the
    # reconciler will send it again.
    app.conf.broker_connection_timeout = 2.0
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
    }
    return app


def queue_for(device: str) -> str:
    return {"cpu": "cpu", "cuda": "gpu"}.get(device, "auto")


def send_job(job_id: str, queue: str, attempt_tag: str = "0") -> bool:
    """Send "run job X"; False when the broker is unreachable (the reconciler retries)."""
    try:
        client().send_task(
            TASK_NAME,
            args=[job_id],
            queue=queue,
            task_id=f"{job_id}.{attempt_tag}",
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5},
        )
        return True
    except Exception as exc:  # kombu raises many kinds; the job stays queued either way
        log.warning("could not send job %s to the broker: %s", job_id, exc)
        return False


def broker_ok() -> bool:
    try:
        with client().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False
