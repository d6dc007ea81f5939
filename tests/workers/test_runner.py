"""The runner in process on a real database (SQLite and PostgreSQL): the lease, resume,
checkpoint fallback, divergence, time limit and cancellation."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import torch
from sqlalchemy import select, update

from app.config import get_settings
from app.db.models import Checkpoint, Job, Metric, utcnow
from app.db.session import session_scope
from models.checkpoint import load_state
from models.loop import denormals_flushed
from models.registry import REGISTRY, get_family
from tests.support.jobs import TINY, job_row, new_job
from workers.runner import LeaseLost, TrainContext, claim, run_job


def test_duplicate_delivery_does_nothing() -> None:
    job_id = new_job()
    settings = get_settings()
    assert claim(job_id, "worker-a", settings) is not None
    assert claim(job_id, "worker-b", settings) is None  # held, heartbeat fresh
    assert job_row(job_id).lease == "worker-a"
    assert job_row(job_id).attempts == 1


def test_stale_lease_is_taken_over_and_the_old_holder_stops() -> None:
    job_id = new_job()
    settings = get_settings()
    old = claim(job_id, "worker-a", settings)
    assert old is not None
    with session_scope() as s:
        stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 1)
        s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=stale))
    assert claim(job_id, "worker-b", settings) is not None
    assert job_row(job_id).attempts == 2
    ctx = TrainContext(old, "worker-a", settings, get_family("mlp"), None, None)  # type: ignore[arg-type]
    ctx.log(1, train_loss=1.0)
    with pytest.raises(LeaseLost):
        ctx.flush()


def test_gives_up_after_max_attempts() -> None:
    job_id = new_job()
    settings = get_settings()
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(attempts=settings.max_attempts))
    assert claim(job_id, "worker-a", settings) is None
    job = job_row(job_id)
    assert job.status == "failed" and "gave up after 3 attempts" in (job.error or "")


def test_run_resume_and_corrupt_checkpoint_fallback() -> None:
    job_id = new_job({**TINY, "train": {"epochs": 4, "keep_checkpoints": 100}})  # keep all
    assert run_job(job_id) == "succeeded"
    job = job_row(job_id)
    assert job.checkpoint_id and job.data_info and job.progress_step == 4
    first_run = job.provenance["train_seconds"]  # worker time, summed over runs
    assert first_run > 0 and job.provenance["parameters"] == 8 + 8 + 8 + 1  # mlp [8], x in R
    with session_scope() as s:
        steps = s.scalars(
            select(Metric.step).where(Metric.job_id == job_id, Metric.name == "train_loss")
        ).all()
        assert sorted(steps) == [1, 2, 3, 4]
        ckpts = s.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)
        ).all()
        assert [c.step for c in ckpts][-1] == 4
        # corrupt the newest checkpoint, then ask for more epochs: resume from the one before
        newest = ckpts[-1]
        newest.data = newest.data[:-10] + b"0123456789"
        job_db = s.get(Job, job_id)
        assert job_db is not None
        job_db.status = "queued"
        job_db.spec = {**job_db.spec, "train": {**job_db.spec["train"], "epochs": 6}}
        previous_step = ckpts[-2].step
    assert run_job(job_id) == "succeeded"
    with session_scope() as s:
        rows = s.execute(
            select(Metric.step, Metric.value).where(
                Metric.job_id == job_id, Metric.name == "train_loss"
            )
        ).all()
        ckpt_steps = s.scalars(select(Checkpoint.step).where(Checkpoint.job_id == job_id)).all()
    assert sorted(r.step for r in rows) == [1, 2, 3, 4, 5, 6]  # replayed steps not doubled
    assert job_row(job_id).provenance["train_seconds"] > first_run
    # resumed from step 3 (the corrupt step-4 checkpoint skipped), not from scratch
    assert previous_step == 3 and sorted(ckpt_steps) == [1, 2, 3, 4, 4, 5, 6]


def test_divergence_fails_with_the_step() -> None:
    job_id = new_job(
        {
            **TINY,
            "dataset": "diabetes",
            "params": {"hidden": [64]},
            "optimizer": {"name": "sgd", "lr": 10.0},
            "train": {"epochs": 20},
        }
    )
    assert run_job(job_id) == "failed"
    assert job_row(job_id).error.startswith("diverged at step")  # type: ignore[union-attr]


def test_time_limit_fails_with_an_actionable_reason() -> None:
    job_id = new_job({**TINY, "train": {"epochs": 100_000, "max_minutes": 0.02}})
    assert run_job(job_id) == "failed"
    job = job_row(job_id)
    assert "time limit" in (job.error or "") and "resume" in (job.error or "")
    assert job.checkpoint_id, "the last state is kept"


def test_cancel_flag_stops_a_running_job() -> None:
    import threading
    import time

    job_id = new_job({**TINY, "train": {"epochs": 100_000}})

    def cancel_soon() -> None:
        time.sleep(1.5)
        with session_scope() as s:
            s.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))

    threading.Thread(target=cancel_soon).start()
    t0 = time.monotonic()
    assert run_job(job_id) == "cancelled"
    assert time.monotonic() - t0 < 1.5 + 1.5  # stops within about a second
    assert job_row(job_id).checkpoint_id


def test_out_of_memory_is_recognised_from_a_real_allocator_failure() -> None:
    import torch

    from workers.runner import out_of_memory_reason

    with pytest.raises(RuntimeError) as info:
        torch.empty(2**45)  # 128 TiB: the CPU allocator refuses
    reason = out_of_memory_reason(info.value, torch.device("cpu"))
    assert reason is not None and reason.startswith("out of memory on cpu: lower train.batch_size")
    assert "can't allocate memory" in reason  # the allocator's own words, for the user
    cuda_oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert (out_of_memory_reason(cuda_oom, None) or "").startswith("out of memory on the device")
    assert (
        out_of_memory_reason(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), None)
        is None
    )
    assert out_of_memory_reason(ValueError("out of memory"), None) is None


def test_a_resumed_run_without_a_better_epoch_scores_the_earlier_best() -> None:
    """``best_model`` after a resume: the run before wrote the best checkpoint, which the
    job's ``checkpoint_id`` names; ``final_test`` scores it when this run finds none better."""
    job_id = new_job({**TINY, "train": {"epochs": 3}})
    assert run_job(job_id) == "succeeded"
    job = job_row(job_id)
    with session_scope() as s:
        ckpt = s.get(Checkpoint, job.checkpoint_id)
        assert ckpt is not None and ckpt.is_best
        served = load_state(ckpt.data)
    assert served["__has_best__"] is True
    ctx = TrainContext(job, "w", get_settings(), get_family("mlp"), None, served)  # type: ignore[arg-type]
    best = ctx.best_model()
    assert best is not None and best.keys() == served["model"].keys()
    assert all(torch.equal(best[k], served["model"][k]) for k in best)
    fresh = TrainContext(job, "w", get_settings(), get_family("mlp"), None, None)  # type: ignore[arg-type]
    assert fresh.best_model() is None  # a first run before any best: the final weights


@pytest.mark.parametrize("setting", [True, False])
def test_training_flushes_denormals_as_set_and_restores_the_thread(
    setting: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEEPZOO_FLUSH_DENORMAL holds while the family trains (Adam's state decaying through
    denormals was ~20x slower per multiply), and the thread's mode is put back after."""
    monkeypatch.setenv("DEEPZOO_FLUSH_DENORMAL", str(setting).lower())
    get_settings.cache_clear()
    family = get_family("mlp")
    seen: list[bool] = []

    def fit(*args: object) -> None:
        seen.append(denormals_flushed())
        family.fit(*args)  # type: ignore[arg-type]

    monkeypatch.setitem(REGISTRY, "mlp", dataclasses.replace(family, fit=fit))
    before = denormals_flushed()
    assert run_job(new_job()) == "succeeded"
    assert seen == [setting]
    assert denormals_flushed() == before
    torch.set_flush_denormal(not before)
    assert denormals_flushed() == (not before)  # the probe tells the two modes apart
    torch.set_flush_denormal(before)
