"""Database operations shared by the API and the workers."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

from sqlalchemy import delete, inspect, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.db.models import Checkpoint, Job, JobEvent, Metric

log = logging.getLogger("deepzoo.db")
T = TypeVar("T")


def add_event(session: Session, job: Job | str, kind: str, data: dict[str, Any]) -> None:
    """Append a server-sent event with the job's next ``seq`` (its SSE ``id``).

    The seq comes from ``UPDATE jobs SET event_seq = event_seq + 1 ... RETURNING``: the
    row lock (PostgreSQL) or the write lock (SQLite) it takes is held until this
    transaction ends, so a job's events commit in seq order whichever of the API, the
    worker or the reconciler writes them, and a reader that saw seq n has seen every
    event before it. A job not yet in the database (being created in this session)
    counts in memory: nobody else can see it. A job that is gone gets no event.
    """
    if isinstance(job, Job) and inspect(job).pending:
        job.event_seq = (job.event_seq or 0) + 1
        session.add(JobEvent(job_id=job.id, seq=job.event_seq, kind=kind, data=data))
        return
    job_id = job if isinstance(job, str) else job.id
    seq = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(event_seq=Job.event_seq + 1)
        .returning(Job.event_seq),
        execution_options={"synchronize_session": False},
    ).scalar_one_or_none()
    if seq is None:
        log.warning("job %s is gone; %s event dropped", job_id, kind)
        return
    if isinstance(job, Job):
        set_committed_value(job, "event_seq", seq)
    session.add(JobEvent(job_id=job_id, seq=seq, kind=kind, data=data))


def insert_metrics(session: Session, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on (job, name, step): a replayed step is not doubled."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:  # pragma: no cover - DeepZoo supports SQLite and PostgreSQL
        raise RuntimeError(f"unsupported database {dialect}")
    for i in range(0, len(rows), 500):
        stmt = insert(Metric).values(rows[i : i + 500])
        session.execute(stmt.on_conflict_do_nothing(index_elements=["job_id", "name", "step"]))


def relax_durability(session: Session) -> None:
    """PostgreSQL: don't wait for this transaction's WAL flush (``synchronous_commit=off``).

    For heartbeats only: a database crash can lose the last fraction of a second of
    them, and the next beat writes them again. Metric batches commit durably: when the
    database crashes and recovers under a worker that trains on, a lost batch would
    never be written again (``tests/e2e/test_postgres_restart.py`` found exactly that
    gap). SQLite already runs WAL with ``synchronous=NORMAL``.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))


def checkpoint_ok(ckpt: Checkpoint) -> bool:
    return hashlib.sha256(ckpt.data).hexdigest() == ckpt.sha256


def good_checkpoints_newest_first(session: Session, job_id: str) -> Iterator[Checkpoint]:
    """The job's checkpoints, newest first, skipping any whose bytes fail their sha256."""
    ids = session.scalars(
        select(Checkpoint.id)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step.desc(), Checkpoint.created_at.desc())
    ).all()
    for cid in ids:
        ckpt = session.get(Checkpoint, cid)
        if ckpt is None:
            continue
        if checkpoint_ok(ckpt):
            yield ckpt
        else:
            log.error("checkpoint %s of job %s fails its sha256; skipped", cid, job_id)


def prune_checkpoints(
    session: Session, job_id: str, keep: int, protect: Collection[str | None] = ()
) -> int:
    """Delete the job's checkpoints but the newest ``keep`` (by step, then time) and those
    in ``protect`` (the one the job's ``checkpoint_id`` points at: the best, or the latest);
    returns the bytes freed. The newest ones are what a resume loads (newest good first),
    so ``keep`` >= 2 also keeps a fallback for a corrupt newest one."""
    rows = session.execute(
        select(Checkpoint.id, Checkpoint.size)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step.desc(), Checkpoint.created_at.desc())
    ).all()
    doomed = [r for r in rows[max(keep, 1) :] if r.id not in protect]
    if not doomed:
        return 0
    session.execute(delete(Checkpoint).where(Checkpoint.id.in_([r.id for r in doomed])))
    return sum(int(r.size) for r in doomed)


def retry_db(fn: Callable[[], T], *, attempts: int = 30, delay: float = 0.5) -> T:
    """Run a short transaction, retrying while the database is unreachable or busy."""
    for i in range(attempts):
        try:
            return fn()
        except (OperationalError, DBAPIError) as exc:
            if i == attempts - 1 or not _transient(exc):
                raise
            log.warning("database error (%s); retrying in %.1fs", type(exc.orig).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)
    raise AssertionError("unreachable")


def _transient(exc: DBAPIError) -> bool:
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError)
