"""The training runner: claim a job, build its family, resume, run, record the outcome.

The family owns its loop; the runner owns everything around it through
``TrainContext`` (metrics, checkpoints, progress, heartbeats, cancellation, time
limit). A job is claimed with a conditional UPDATE (a lease in the database), so
a duplicate delivery of a job that another worker holds does nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from sqlalchemy import select, update

from app.config import Settings, get_settings
from app.datasets import load_job_data
from app.db.models import Checkpoint, Job, new_id, utcnow
from app.db.ops import (
    add_event,
    good_checkpoints_newest_first,
    insert_metrics,
    prune_checkpoints,
    relax_durability,
    retry_db,
)
from app.db.session import get_engine, session_scope
from app.queue import send_job
from app.storage import describe, quota_bytes, usage
from models.checkpoint import dump_state, load_state, rng_state, set_rng_state
from models.data import DataInfo
from models.family import Diverged, Family
from models.loop import flush_denormals
from models.optim import OptimizerSpec, build_optimizer
from models.registry import get_family
from workers.evaluation import log_calibration, served_state

log = logging.getLogger("deepzoo.runner")


_HANDBACK = threading.Event()


def request_handback() -> None:
    """Called from the worker's signal handler: the worker is shutting down."""
    _HANDBACK.set()


class LeaseLost(Exception):
    """Another worker holds this job now; stop without writing anything."""


class StorageQuotaExceeded(Exception):
    """The next checkpoint would take the job's owner over ``DEEPZOO_STORAGE_QUOTA_MB``:
    it was not written, and the job fails (resumable once space is freed)."""


def run_job(job_id: str, worker: str | None = None) -> str:
    """Run one job; ``worker`` names the Celery node (recorded in the provenance)."""
    settings = get_settings()
    lease = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    job = claim(job_id, lease, settings)
    if job is None:
        return "skipped"
    return Runner(job, lease, settings, worker or socket.gethostname()).run()


def claim(job_id: str, lease: str, settings: Settings) -> Job | None:
    """Take the job if it is queued, or running under a lease whose heartbeat went stale."""
    now = utcnow()
    stale = now - timedelta(seconds=settings.heartbeat_timeout_seconds)
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            log.warning("job %s does not exist (deleted?); dropping the message", job_id)
            return None
        takeable = job.status == "queued" or (
            job.status == "running" and (job.heartbeat_at is None or job.heartbeat_at < stale)
        )
        if not takeable:
            log.info(
                "job %s is %s under %s; duplicate delivery ignored", job_id, job.status, job.lease
            )
            return None
        if job.attempts >= settings.max_attempts:
            job.status, job.finished_at = "failed", now
            job.error = f"gave up after {job.attempts} attempts (the worker was lost each time)"
            add_event(s, job, "status", {"status": "failed", "error": job.error})
            return None
        cond = [Job.id == job_id, Job.status == job.status, Job.attempts == job.attempts]
        cond.append(Job.lease.is_(None) if job.lease is None else Job.lease == job.lease)
        res = s.execute(
            update(Job)
            .where(*cond)
            .values(
                status="running",
                lease=lease,
                heartbeat_at=now,
                attempts=job.attempts + 1,
                started_at=job.started_at or now,
                error=None,
            )
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return None
        s.expire(job)
        job = s.get(Job, job_id)
        assert job is not None
        add_event(s, job, "status", {"status": "running", "attempt": job.attempts})
        s.expunge(job)
        return job


def resolve_device(
    requested: str, worker_default: str = "auto", memory_fraction: float = 1.0
) -> torch.device:
    """The job's ``train.device``; ``auto`` takes the worker's ``DEEPZOO_DEVICE``, then CUDA
    when present, else CPU. On CUDA, ``memory_fraction`` < 1 caps what this process may
    allocate (``DEEPZOO_CUDA_MEMORY_FRACTION``: several workers sharing one GPU)."""
    if requested == "auto":
        requested = worker_default
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but this worker has no CUDA device")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    device = torch.device("cuda", torch.cuda.current_device())
    if memory_fraction < 1.0:
        torch.cuda.set_per_process_memory_fraction(memory_fraction, device)
    return device


def free_device_memory() -> None:
    """Return the caching allocator's blocks after an OOM, so the last checkpoint fits."""
    import gc

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


# What the allocators say when memory runs out: torch.OutOfMemoryError on CUDA, plain
# RuntimeErrors from the CPU allocator and from cuBLAS / cuDNN workspaces.
_OOM_MARKERS = (
    "out of memory",
    "can't allocate memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
)


def out_of_memory_reason(exc: BaseException, device: torch.device | None) -> str | None:
    """An actionable failure reason when ``exc`` is an allocation failure, else None.

    Not retried: the same spec on the same worker would fail the same way, so the job
    fails at once and says which knobs to turn.
    """
    if not isinstance(exc, (torch.OutOfMemoryError, RuntimeError)):
        return None
    text = str(exc)
    if not isinstance(exc, torch.OutOfMemoryError) and not any(
        m.lower() in text.lower() for m in _OOM_MARKERS
    ):
        return None
    where = str(device) if device is not None else "the device"
    detail = text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
    return (
        f"out of memory on {where}: lower train.batch_size or the model size (params), "
        f"or train on a device with more memory ({detail})"
    )


class TrainContext:
    """The service's ``models.family.Context``: database metrics and checkpoints."""

    def __init__(
        self,
        job: Job,
        lease: str,
        settings: Settings,
        family: Family,
        device: torch.device,
        resume: dict[str, Any] | None,
    ) -> None:
        train = job.spec["train"]
        self.job_id, self.lease, self.settings = job.id, lease, settings
        self.owner = job.owner
        self.keep_checkpoints = int(train.get("keep_checkpoints", 2))
        self.device = device
        self.seed = int(train["seed"])
        self.epochs: int | None = train.get("epochs")
        self.steps: int | None = train.get("steps")
        self.batch_size = int(train.get("batch_size") or family.default_batch_size)
        self.checkpoint_every = int(train.get("checkpoint_every", 1))
        self.deadline = time.monotonic() + float(train.get("max_minutes", 60.0)) * 60
        self.optimizer_spec = OptimizerSpec(**job.spec["optimizer"])
        self.resume = resume
        self.generator = torch.Generator().manual_seed(self.seed)
        self.stop_reason: str | None = None
        self.cancel_requested = False
        self.lease_lost = False
        self._pending: list[dict[str, Any]] = []
        self._latest: dict[str, float | None] = dict(job.metrics or {})
        self._last_flush = time.monotonic()
        self._saved_step = -1
        self._last_write = time.monotonic()
        # (step, state, rng) offered but not yet written; states are the family's copies
        self._latest_offer: tuple[int, dict[str, Any], dict[str, Any]] | None = None
        self._best_offer: tuple[int, dict[str, Any], dict[str, Any]] | None = None
        self._has_best = False
        self._best_model: dict[str, torch.Tensor] | None = None  # this run's best weights
        self._progress: tuple[int, int] = (job.progress_step, job.progress_total)
        self._progress_origin: tuple[float, int] | None = None
        if resume is not None:
            self._saved_step = int(resume.get("__step__", -1))
            # a resumed job keeps pointing inference at its best checkpoint until a better one
            self._has_best = bool(resume.get("__has_best__", False))
            self.generator.set_state(resume["__rng__"]["generator"])
            set_rng_state(resume["__rng__"]["global"])

    # --- the Context protocol -------------------------------------------------------------
    def make_optimizer(
        self, params: Any, *, weight_decay: float | None = None
    ) -> torch.optim.Optimizer:
        return build_optimizer(self.optimizer_spec, params, weight_decay=weight_decay)

    def log(self, step: int, **metrics: float) -> None:
        now = utcnow()
        for name, value in metrics.items():
            v = float(value)
            finite = math.isfinite(v)
            if not finite and "loss" in name:
                raise Diverged(step)
            self._pending.append(
                {
                    "job_id": self.job_id,
                    "name": name,
                    "step": int(step),
                    "value": v if finite else None,
                    "created_at": now,
                }
            )
            self._latest[name] = v if finite else None
        if time.monotonic() - self._last_flush > 1.0 or len(self._pending) > 500:
            self.flush()

    def checkpoint(self, step: int, state: dict[str, Any], *, best: bool = False) -> None:
        """Offer a state; it is written every ``train.checkpoint_every`` epochs (or steps)
        but no more often than ``DEEPZOO_CHECKPOINT_MIN_SECONDS``, and always at the end,
        on a stop, and on failure. A newer best is written along with the next write."""
        offer = (step, state, self._rng())
        self._latest_offer = offer
        if best:
            self._best_offer, self._has_best = offer, True
            self._best_model = state.get("model")
        due = (
            step - self._saved_step >= self.checkpoint_every
            and time.monotonic() - self._last_write >= self.settings.checkpoint_min_seconds
        )
        if due or self._at_end(step) or self.stop_reason is not None:
            self.save_pending()

    def best_model(self) -> dict[str, torch.Tensor] | None:
        """This run's best weights, else (after a resume) those of the best checkpoint an
        earlier run wrote, which the job's ``checkpoint_id`` still names."""
        if self._best_model is not None:
            return self._best_model
        return served_state(self.job_id) if self._has_best else None

    def update_served(self, model: dict[str, torch.Tensor]) -> None:
        """Write the served checkpoint again with ``model`` as its ``"model"`` state, as a
        new row at its step (inference caches models by checkpoint id) that the job points
        at; retention then prunes the old one as any other. The rest of the state is the
        old row's, so a resume from it (the newest when it was the latest) trains as from
        the old one."""
        self.save_pending()

        def read() -> tuple[int, bool, bytes] | None:
            with session_scope() as s:
                served = s.scalar(select(Job.checkpoint_id).where(Job.id == self.job_id))
                old = None if served is None else s.get(Checkpoint, served)
                return None if old is None else (old.step, old.is_best, old.data)

        found = retry_db(read)
        if found is None:
            return
        step, is_best, data = found
        if is_best:
            self._best_model = model
        data = dump_state({**load_state(data), "model": model})
        self._store(step, data, is_best=is_best, served=True)

    def should_stop(self) -> bool:
        if self.lease_lost:
            raise LeaseLost(self.job_id)
        if self.stop_reason is None:
            if self.cancel_requested:
                self.stop_reason = "cancelled"
            elif _HANDBACK.is_set():
                self.stop_reason = "handback"
            elif time.monotonic() > self.deadline:
                self.stop_reason = "time_limit"
        return self.stop_reason is not None

    def progress(self, step: int, total: int) -> None:
        if self._progress_origin is None:
            self._progress_origin = (time.monotonic(), step)
        self._progress = (int(step), int(total))

    # --- around the loop -------------------------------------------------------------------
    def _rng(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "global": rng_state()}

    def _at_end(self, step: int) -> bool:
        total = self._progress[1] or self.epochs or self.steps or 0
        return total > 0 and step >= total

    def eta_seconds(self) -> float | None:
        step, total = self._progress
        if self._progress_origin is None or total <= 0:
            return None
        t0, s0 = self._progress_origin
        done = step - s0
        if done <= 0:
            return None
        return max(0.0, (time.monotonic() - t0) / done * (total - step))

    def flush(self) -> None:
        """Write buffered metrics (unique per job, name, step: a replay never doubles).

        A durable commit (about one a second): should the database crash and come back
        while this worker trains on, nothing would ever write these steps again.
        """
        if not self._pending:
            return
        rows, self._pending = self._pending, []

        def write() -> None:
            with session_scope() as s:
                self._check_lease(s)
                insert_metrics(s, rows)
                s.execute(
                    update(Job).where(Job.id == self.job_id).values(metrics=dict(self._latest))
                )
                add_event(
                    s,
                    self.job_id,
                    "metrics",
                    {
                        "metrics": [
                            {"name": r["name"], "step": r["step"], "value": r["value"]}
                            for r in rows
                        ]
                    },
                )

        retry_db(write)
        self._last_flush = time.monotonic()

    def save_pending(self) -> None:
        """Write the offered best (when newer than what is saved) and then the latest."""
        best, latest = self._best_offer, self._latest_offer
        if best is not None and best is not latest and best[0] > self._saved_step:
            self._write_checkpoint(best, is_best=True)
        if latest is not None and latest[0] > self._saved_step:
            self._write_checkpoint(latest, is_best=latest is best)
        self._best_offer = self._latest_offer = None

    def _write_checkpoint(
        self, offer: tuple[int, dict[str, Any], dict[str, Any]], *, is_best: bool
    ) -> None:
        step, state, rng = offer
        data = dump_state(
            {**state, "__step__": step, "__rng__": rng, "__has_best__": self._has_best}
        )
        self._store(step, data, is_best=is_best, served=is_best or not self._has_best)
        self._saved_step, self._last_write = step, time.monotonic()

    def _store(self, step: int, data: bytes, *, is_best: bool, served: bool) -> None:
        """Insert a checkpoint row; ``served``: point the job's inference at it (the best,
        or the latest while none is best)."""
        self.flush()  # metrics up to this step are in the database before the checkpoint

        def write() -> None:
            with session_scope() as s:
                self._check_lease(s)
                ckpt = Checkpoint(
                    id=new_id("ckpt"),
                    job_id=self.job_id,
                    step=step,
                    is_best=is_best,
                    sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data),
                    data=data,
                    meta={"format": "deepzoo-state-1"},
                )
                s.add(ckpt)
                s.flush()
                if served:
                    s.execute(
                        update(Job).where(Job.id == self.job_id).values(checkpoint_id=ckpt.id)
                    )
                # retention: the latest train.keep_checkpoints, and the one inference uses
                serving = s.scalar(select(Job.checkpoint_id).where(Job.id == self.job_id))
                prune_checkpoints(s, self.job_id, self.keep_checkpoints, protect=(serving,))
                s.flush()
                quota = quota_bytes()
                if quota is not None:  # this checkpoint counted, the pruned ones not
                    used = usage(s, self.owner)
                    if used.total > quota:  # roll it all back: nothing written or pruned
                        raise StorageQuotaExceeded(
                            f"storage quota exceeded at step {step}: {describe(used, quota)}, "
                            "then resume this job (its checkpoints so far are kept)"
                        )

        retry_db(write)

    def _check_lease(self, s: Any) -> None:
        holder = s.scalar(select(Job.lease).where(Job.id == self.job_id))
        if holder != self.lease:
            self.lease_lost = True
            raise LeaseLost(self.job_id)


class Heartbeat(threading.Thread):
    """Every ``interval`` s (``DEEPZOO_HEARTBEAT_SECONDS``): heartbeat and progress out, the
    cancel flag in; cancellation is therefore seen within one interval."""

    def __init__(self, ctx: TrainContext, interval: float = 0.5) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{ctx.job_id}")
        self.ctx, self.interval = ctx, interval
        self.done = threading.Event()
        self._sent_step = -1

    def run(self) -> None:
        while not self.done.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # the database may be restarting; try again next tick
                log.warning("heartbeat for %s failed: %s", self.ctx.job_id, exc)

    def beat(self) -> None:
        ctx = self.ctx
        step, total = ctx._progress
        eta = ctx.eta_seconds()
        with session_scope() as s:
            relax_durability(s)
            row = s.execute(
                update(Job)
                .where(Job.id == ctx.job_id, Job.lease == ctx.lease)
                .values(
                    heartbeat_at=utcnow(), progress_step=step, progress_total=total, eta_seconds=eta
                )
                .returning(Job.cancel_requested)
            ).first()
            if row is None:
                ctx.lease_lost = True
                return
            ctx.cancel_requested = bool(row[0])
            if step != self._sent_step:
                add_event(s, ctx.job_id, "progress", progress_json(step, total, eta))
                self._sent_step = step


def progress_json(step: int, total: int, eta: float | None) -> dict[str, Any]:
    return {
        "step": step,
        "total": total,
        "fraction": (step / total) if total else 0.0,
        "eta_seconds": eta,
    }


class Runner:
    def __init__(self, job: Job, lease: str, settings: Settings, worker: str) -> None:
        self.job, self.lease, self.settings, self.worker = job, lease, settings, worker

    def run(self) -> str:
        self.started = time.monotonic()  # this run's share of provenance.train_seconds
        job = self.job
        ctx: TrainContext | None = None
        self.ctx: TrainContext | None = None
        device: torch.device | None = None
        heartbeat: Heartbeat | None = None
        self.heartbeat: Heartbeat | None = None
        try:
            family = get_family(job.model)
            params = family.params(**job.spec["params"])
            device = resolve_device(
                job.spec["train"]["device"],
                self.settings.device,
                self.settings.cuda_memory_fraction,
            )
            seed_everything(int(job.spec["train"]["seed"]))
            # any data kind (models.data.DataKind): a built-in, or an upload from the database
            data = load_job_data(job.dataset)
            resume = self._load_resume()
            module = family.build(params, data.info).to(device)
            ctx = self.ctx = TrainContext(job, self.lease, self.settings, family, device, resume)
            parameters = sum(p.numel() for p in module.parameters())  # as inference counts
            self._record_start(data.info, data.fingerprint(), device, parameters)
            heartbeat = self.heartbeat = Heartbeat(ctx, self.settings.heartbeat_seconds)
            heartbeat.start()
            with flush_denormals(self.settings.flush_denormal):  # this thread, for the fit
                family.fit(module, data, params, ctx)
            ctx.flush()
            ctx.save_pending()
            if ctx.stop_reason == "cancelled":
                return self._finish("cancelled", None)
            if ctx.stop_reason == "handback":
                return self._hand_back()
            if ctx.stop_reason == "time_limit":
                minutes = job.spec["train"]["max_minutes"]
                return self._finish(
                    "failed",
                    f"time limit reached (train.max_minutes={minutes}); "
                    "resume the job to continue from its last checkpoint",
                )
            # calibration of the checkpoint inference serves (workers/evaluation.py)
            final_step = ctx._progress[0] or ctx.epochs or ctx.steps or 0
            log_calibration(job.id, family, params, data, ctx, final_step)
            ctx.flush()
            return self._finish("succeeded", None)
        except LeaseLost:
            log.warning("job %s: lease lost; another worker holds it", job.id)
            return "lease_lost"
        except StorageQuotaExceeded as exc:
            if ctx is not None:  # keep the metrics; offer no checkpoint again
                ctx._best_offer = ctx._latest_offer = None
            self._salvage(ctx)
            return self._finish("failed", str(exc))
        except Diverged as exc:
            self._salvage(ctx)
            return self._finish("failed", f"{exc}; the last good checkpoint is kept")
        except Exception as exc:
            oom = out_of_memory_reason(exc, device)
            if oom is not None:
                log.error("job %s: %s", job.id, oom)
                del exc  # its traceback holds the frames' tensors
                free_device_memory()
                self._salvage(ctx)
                return self._finish("failed", oom)
            log.exception("job %s failed", job.id)
            self._salvage(ctx)
            return self._finish("failed", f"{type(exc).__name__}: {exc}")
        finally:
            if heartbeat is not None:
                heartbeat.done.set()
                heartbeat.join(timeout=5)

    def _salvage(self, ctx: TrainContext | None) -> None:
        if ctx is None or ctx.lease_lost:
            return
        try:
            ctx.flush()
            ctx.save_pending()
        except Exception:
            log.exception("job %s: could not save the last state", self.job.id)

    def _load_resume(self) -> dict[str, Any] | None:
        with session_scope() as s:
            for ckpt in good_checkpoints_newest_first(s, self.job.id):
                try:
                    state = load_state(ckpt.data)
                    log.info(
                        "job %s resumes from checkpoint %s (step %d)",
                        self.job.id,
                        ckpt.id,
                        ckpt.step,
                    )
                    return state
                except Exception as exc:
                    log.error(
                        "checkpoint %s unreadable (%s); trying the previous one", ckpt.id, exc
                    )
        return None

    def _record_start(
        self, info: DataInfo, data_hash: str, device: torch.device, parameters: int
    ) -> None:
        def write() -> None:
            with session_scope() as s:
                job = s.get(Job, self.job.id)
                assert job is not None
                if job.lease != self.lease:
                    raise LeaseLost(job.id)
                job.data_info = info.to_json()
                job.provenance = {
                    **(job.provenance or {}),
                    "dataset_sha256": data_hash,
                    "parameters": parameters,
                    "device": str(device),
                    "worker": self.worker,
                    "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(),
                    "numpy": np.__version__,
                }

        retry_db(write)

    def _hand_back(self) -> str:
        """Back to the queue for another worker; the hand-back does not count as an attempt."""

        def write() -> None:
            with session_scope() as s:
                job = s.get(Job, self.job.id)
                if job is None or job.lease != self.lease:
                    raise LeaseLost(self.job.id)
                job.status, job.lease, job.sent_at = "queued", None, utcnow()
                job.attempts = max(0, job.attempts - 1)
                job.provenance = self._with_train_seconds(job.provenance)
                add_event(s, job, "status", {"status": "queued", "handed_back": True})

        try:
            retry_db(write)
        except LeaseLost:
            return "lease_lost"
        send_job(self.job.id, self.job.queue, attempt_tag=f"h-{uuid.uuid4().hex[:8]}")
        log.info("job %s handed back (worker shutting down)", self.job.id)
        return "handed_back"

    def _with_train_seconds(self, provenance: dict[str, Any] | None) -> dict[str, Any]:
        """``provenance`` with this run's seconds added to ``train_seconds``: the worker
        time a job took, summed over its runs (a resume's wait between them is not in it,
        nor a run whose worker was lost)."""
        before = float((provenance or {}).get("train_seconds", 0.0))
        spent = time.monotonic() - self.started
        return {**(provenance or {}), "train_seconds": round(before + spent, 3)}

    def _stop_heartbeat(self) -> int:
        """Stop the heartbeat thread; the step of the last progress event it sent."""
        if self.heartbeat is None:
            return -1
        self.heartbeat.done.set()
        self.heartbeat.join(timeout=5)
        return self.heartbeat._sent_step

    def _finish(self, status: str, error: str | None) -> str:
        # a job shorter than one heartbeat would otherwise end with no progress event at all;
        # the heartbeat stops first so that the last progress event precedes the status
        sent_step = self._stop_heartbeat()

        def write() -> None:
            with session_scope() as s:
                job = s.get(Job, self.job.id)
                if job is None or job.lease != self.lease:
                    raise LeaseLost(self.job.id)
                job.status, job.error, job.finished_at = status, error, utcnow()
                job.lease, job.cancel_requested = None, False
                job.provenance = self._with_train_seconds(job.provenance)
                if self.ctx is not None:  # the heartbeat may not have written the last step
                    job.progress_step, job.progress_total = self.ctx._progress
                    job.eta_seconds = 0.0 if status == "succeeded" else None
                    if job.progress_step != sent_step and job.progress_total > 0:
                        progress = progress_json(
                            job.progress_step, job.progress_total, job.eta_seconds
                        )
                        add_event(s, job, "progress", progress)
                payload: dict[str, Any] = {"status": status}
                if error:
                    payload["error"] = error
                add_event(s, job, "status", payload)

        try:
            retry_db(write)
        except LeaseLost:
            return "lease_lost"
        log.info("job %s %s%s", self.job.id, status, f": {error}" if error else "")
        return status


def warm_up() -> None:
    """Pay torch's lazy imports (the first optimizer pulls in ~800 modules) once, in the
    worker's parent, so each per-job child starts with them loaded.

    No tensor arithmetic here: once a process has entered an OpenMP parallel region,
    a forked child can hang in its next one (GNU libgomp is not fork-safe).
    """
    build_optimizer(OptimizerSpec(), [torch.nn.Parameter(torch.zeros(1))])
    # initialise the database dialect once (PostgreSQL asks the server several things on
    # the first connection); each child then only opens its own connections
    try:
        with get_engine().connect() as conn:
            conn.execute(select(1))
        get_engine().dispose()
    except Exception as exc:  # the database may not be up yet; a job will connect later
        log.warning("database not reachable at worker start: %s", exc)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
