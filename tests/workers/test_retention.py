"""Checkpoint retention and the storage quota in the runner, in process on SQLite and
PostgreSQL: a job keeps its latest ``train.keep_checkpoints`` plus the one inference uses,
resumes from what is kept, and fails with a clear error when its next checkpoint would
take its owner over ``DEEPZOO_STORAGE_QUOTA_MB``."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update

from app.config import get_settings
from app.datasets import store
from app.db.models import Checkpoint, Dataset, Job, Metric, new_id
from app.db.ops import prune_checkpoints
from app.db.session import session_scope
from app.storage import usage
from models.data.upload import parse
from tests.support.jobs import ME, TINY, job_row, new_job
from workers.runner import run_job


def spec(epochs: int, keep: int | None = None) -> dict[str, Any]:
    train: dict[str, Any] = {"epochs": epochs}
    if keep is not None:
        train["keep_checkpoints"] = keep
    return {**TINY, "train": train}


def checkpoints(job_id: str) -> list[tuple[int, str]]:
    with session_scope() as s:
        rows = s.execute(
            select(Checkpoint.step, Checkpoint.id)
            .where(Checkpoint.job_id == job_id)
            .order_by(Checkpoint.step)
        ).all()
    return [(r.step, r.id) for r in rows]


def test_keep_checkpoints_defaults_to_2_and_is_bounded() -> None:
    from pydantic import ValidationError

    from app.api.jobs import SPEC_ADAPTER

    assert SPEC_ADAPTER.validate_python(TINY).train.keep_checkpoints == 2
    for bad in (0, 101):
        with pytest.raises(ValidationError, match="keep_checkpoints"):
            SPEC_ADAPTER.validate_python(spec(2, bad))


@pytest.mark.parametrize("keep", [1, 2])
def test_a_job_keeps_its_latest_n_and_the_one_inference_uses(keep: int) -> None:
    """Eight epochs, a checkpoint each: at most keep + 1 rows are left (they were 8), the
    latest among them, and the job's checkpoint_id is one of them."""
    job_id = new_job(spec(8, keep))
    assert run_job(job_id) == "succeeded"
    kept = checkpoints(job_id)
    steps = [step for step, _ in kept]
    assert steps[-keep:] == list(range(9 - keep, 9))  # the latest N
    assert len(kept) <= keep + 1
    serving = job_row(job_id).checkpoint_id
    assert serving in {cid for _, cid in kept}


def test_pruning_spares_the_serving_checkpoint(api_env: str) -> None:
    """prune_checkpoints on real rows: the newest N by step, plus the protected one."""
    job_id = new_job()
    ids: dict[int, str] = {}
    with session_scope() as s:
        for step in range(1, 7):
            data = bytes([step]) * 1000
            ids[step] = new_id("ckpt")
            s.add(
                Checkpoint(
                    id=ids[step],
                    job_id=job_id,
                    step=step,
                    sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data),
                    data=data,
                )
            )
    with session_scope() as s:
        freed = prune_checkpoints(s, job_id, 2, protect=(ids[2],))
    assert freed == 3 * 1000
    assert [step for step, _ in checkpoints(job_id)] == [2, 5, 6]


def test_resume_after_pruning_continues_from_the_latest() -> None:
    job_id = new_job(spec(4, 1))
    assert run_job(job_id) == "succeeded"
    assert [step for step, _ in checkpoints(job_id)][-1] == 4
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.status = "queued"
        job.spec = {**job.spec, "train": {**job.spec["train"], "epochs": 6}}
    assert run_job(job_id) == "succeeded"
    with session_scope() as s:
        steps = s.scalars(
            select(Metric.step).where(Metric.job_id == job_id, Metric.name == "train_loss")
        ).all()
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]  # resumed at 5, not from scratch
    kept = [step for step, _ in checkpoints(job_id)]
    assert kept[-1] == 6 and len(kept) <= 2


def big_upload(mib: float) -> str:
    """An upload whose stored form takes about ``mib`` MiB (random float32: incompressible)."""
    rng = np.random.default_rng(0)
    n = int(mib * 2**20 / 4 / 8)
    x, y = rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=n)
    import io

    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    blob = buf.getvalue()
    with session_scope() as s:
        return store(s, ME.owner, "big", blob, parse(blob, task="regression")).id


def test_a_job_crossing_the_quota_fails_clearly_and_resumes_once_space_is_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEEPZOO_STORAGE_QUOTA_MB", "1")
    get_settings.cache_clear()
    job_id = new_job(spec(3))
    upload = big_upload(1.2)  # the owner is over the quota once the job is queued
    assert run_job(job_id) == "failed"
    job = job_row(job_id)
    assert job.error is not None and job.error.startswith("storage quota exceeded at step 1")
    assert "DEEPZOO_STORAGE_QUOTA_MB=1" in job.error and "resume" in job.error
    assert checkpoints(job_id) == [] and job.checkpoint_id is None  # nothing half-written
    with session_scope() as s:  # its metrics are kept
        assert s.scalar(select(Metric.id).where(Metric.job_id == job_id).limit(1))
        s.execute(update(Job).where(Job.id == job_id).values(status="queued"))
        s.delete(s.get(Dataset, upload))
    assert run_job(job_id) == "succeeded"
    assert [step for step, _ in checkpoints(job_id)][-1] == 3
    with session_scope() as s:
        used = usage(s, ME.owner)
    assert 0 < used.checkpoints < 2**20 and used.uploads == 0
