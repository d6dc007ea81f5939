"""The workers' Celery app. No CUDA and no torch at import: the prefork pool forks."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_init, worker_process_init

from app.config import get_settings
from app.queue import TASK_NAME, celery_config

app = Celery("deepzoo")
app.conf.update(celery_config(get_settings()))


@worker_init.connect
def _preload(**_: object) -> None:
    # Import torch and the zoo once in the parent: every per-job child is forked with them
    # loaded, so a job starts in milliseconds. Importing torch does not initialise CUDA.
    from workers.runner import warm_up

    warm_up()


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    # a forked child must not share the parent's database connections
    from app.db.session import reset_engine

    reset_engine()


@app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def train_job(self: object, job_id: str) -> str:
    from workers.runner import run_job

    return run_job(job_id)
