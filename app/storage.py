"""Storage per owner: checkpoints and uploads, and the quota on them.

Both live in the database (workers on other hosts need only its URL), so an owner's
usage is a sum over rows: ``checkpoints.size`` of their jobs, plus the stored (canonical
float32 ``.npz``) bytes of their uploads. ``DEEPZOO_STORAGE_QUOTA_MB`` caps it (0: no
quota):

- ``POST /v1/jobs`` by an owner at or over the quota: 422, the problem's ``errors`` path
  ``storage``; ``POST /v1/datasets``: the same when the upload would take the owner over;
- a job whose next checkpoint would take its owner over fails with ``storage quota
  exceeded`` (checked in the transaction that writes it, after pruning; the checkpoints
  already written are kept, and the job resumes from them once space is freed);
- ``DELETE /v1/jobs/{id}`` and ``DELETE /v1/datasets/{id}`` free the bytes.

Each job keeps its latest ``train.keep_checkpoints`` checkpoints plus the one inference
uses (``app.db.ops.prune_checkpoints``), so a job's share is bounded by its spec.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db.models import Checkpoint, Dataset, Job
from app.refusals import Refused

MiB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    checkpoints: int  # bytes
    uploads: int  # bytes

    @property
    def total(self) -> int:
        return self.checkpoints + self.uploads


def usage(session: Session, owner: str) -> Usage:
    """The bytes the owner's checkpoints and uploads take in the database."""
    checkpoints = session.scalar(
        select(func.coalesce(func.sum(Checkpoint.size), 0))
        .join(Job, Job.id == Checkpoint.job_id)
        .where(Job.owner == owner)
    )
    uploads = session.scalar(
        select(func.coalesce(func.sum(func.length(Dataset.data)), 0)).where(Dataset.owner == owner)
    )
    return Usage(int(checkpoints or 0), int(uploads or 0))


def quota_bytes() -> int | None:
    """``DEEPZOO_STORAGE_QUOTA_MB`` in bytes; None when there is no quota (0)."""
    mb = get_settings().storage_quota_mb
    return mb * MiB if mb > 0 else None


def over_quota(session: Session, owner: str, incoming: int = 0) -> str | None:
    """Why ``incoming`` more bytes would not fit (or, with 0, why the owner is already at
    the quota); None when they fit."""
    quota = quota_bytes()
    if quota is None:
        return None
    used = usage(session, owner)
    fits = used.total + incoming <= quota if incoming else used.total < quota
    return None if fits else f"storage quota exceeded: {describe(used, quota, incoming)}"


def describe(used: Usage, quota: int, incoming: int = 0) -> str:
    adding = f" + {_mb(incoming)} for this upload" if incoming else ""
    return (
        f"checkpoints {_mb(used.checkpoints)} + uploads {_mb(used.uploads)}{adding}, "
        f"DEEPZOO_STORAGE_QUOTA_MB={quota // MiB}; delete finished jobs or uploads to "
        "free space"
    )


class QuotaExceeded(Refused):
    """The owner is at the storage quota, or the incoming bytes would take them over it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, field="storage", message=reason, kind="storage_quota")
        self.reason = reason


def check_quota(session: Session, owner: str, incoming: int = 0) -> None:
    """:class:`QuotaExceeded` (a 422 naming ``storage`` in the API) when the owner is at
    the quota, or ``incoming`` bytes more would take them over it."""
    reason = over_quota(session, owner, incoming)
    if reason is not None:
        raise QuotaExceeded(reason)


def _mb(n: int) -> str:
    return f"{n / MiB:,.1f} MiB"
