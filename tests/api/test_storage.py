"""The per-owner storage quota over HTTP (SQLite and PostgreSQL): uploads and jobs refused
with a problem naming ``storage``, another owner unaffected, and DELETE /v1/jobs/{id}
freeing a job's checkpoint bytes (on SQLite, pages the next checkpoints reuse: the file
does not grow)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from app.config import get_settings
from app.db.models import Checkpoint
from app.db.session import get_engine, session_scope
from workers.runner import run_job

MiB = 2**20
JOB = {"model": "mlp", "dataset": "sine_gap", "params": {"hidden": [8]}, "train": {"epochs": 2}}


def npz_of(mib: float, seed: int = 0) -> bytes:
    """An upload whose stored (float32, compressed) form takes about ``mib`` MiB."""
    rng = np.random.default_rng(seed)
    n = int(mib * MiB / 4 / 8)
    buf = io.BytesIO()
    np.savez(buf, x=rng.normal(size=(n, 8)).astype(np.float32), y=rng.normal(size=n))
    return buf.getvalue()


def upload(client: TestClient, blob: bytes) -> Any:
    return client.post(
        "/v1/datasets", files={"file": ("d.npz", blob)}, data={"name": "d", "task": "regression"}
    )


def assert_storage_problem(r: Any, quota_mib: int = 1) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["path"] for e in body["errors"]] == ["storage"], body
    assert body["errors"][0]["type"] == "storage_quota"
    assert "storage quota exceeded" in body["detail"]
    assert f"DEEPZOO_STORAGE_QUOTA_MB={quota_mib}" in body["detail"]


def set_quota(monkeypatch: pytest.MonkeyPatch, mib: int) -> None:
    monkeypatch.setenv("DEEPZOO_STORAGE_QUOTA_MB", str(mib))
    get_settings.cache_clear()


@pytest.fixture
def quota(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("DEEPZOO_CHECKPOINT_MIN_SECONDS", "0")
    set_quota(monkeypatch, 1)
    yield client
    get_settings.cache_clear()


def test_uploads_and_jobs_past_the_quota_are_refused(
    quota: TestClient, other_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = quota
    assert_storage_problem(upload(client, npz_of(1.2)))  # alone over the quota
    first = upload(client, npz_of(0.6))
    assert first.status_code == 201, first.text
    assert_storage_problem(upload(client, npz_of(0.6, seed=1)))  # 1.2 MiB with the first
    assert upload(other_client, npz_of(0.6, seed=1)).status_code == 201  # per owner
    # a job's checkpoints count: 66 k parameters, ~0.8 MB a checkpoint with Adam's moments
    big = {**JOB, "params": {"hidden": [256, 256]}, "train": {"epochs": 1}}
    job = client.post("/v1/jobs", json=big).json()  # 0.6 MiB used: under the quota
    assert run_job(job["id"]) == "failed"
    failed = client.get(f"/v1/jobs/{job['id']}").json()
    assert failed["error"].startswith("storage quota exceeded at step 1"), failed["error"]
    assert client.get(f"/v1/jobs/{job['id']}/checkpoints").json() == []
    assert client.delete(f"/v1/datasets/{first.json()['id']}").status_code == 204  # frees it
    assert client.post(f"/v1/jobs/{job['id']}/resume", json={}).status_code < 300
    assert run_job(job["id"]) == "succeeded"  # now it fits
    assert_storage_problem(upload(client, npz_of(0.3)))  # 0.8 + 0.3 MiB would not
    # an owner already over the quota (it was lowered): no new job, no upload
    set_quota(monkeypatch, 3)
    bigger = {**big, "params": {"hidden": [512, 256]}}  # 132 k parameters: ~1.6 MB
    job2 = client.post("/v1/jobs", json=bigger).json()
    assert run_job(job2["id"]) == "succeeded"
    set_quota(monkeypatch, 2)  # 0.8 + 1.6 MB used
    assert_storage_problem(client.post("/v1/jobs", json=JOB), 2)
    assert_storage_problem(upload(client, npz_of(0.01)), 2)
    assert other_client.post("/v1/jobs", json=JOB).status_code == 201  # per owner
    for j in (job, job2):
        assert client.delete(f"/v1/jobs/{j['id']}").status_code == 204  # frees them
    assert client.post("/v1/jobs", json=JOB).status_code == 201


def test_resuming_past_the_quota_is_refused(
    quota: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume would write checkpoints too: an owner over the quota gets the same 422."""
    client = quota
    set_quota(monkeypatch, 3)
    big = {**JOB, "params": {"hidden": [512, 256]}, "train": {"epochs": 1}}
    done = client.post("/v1/jobs", json=big).json()
    assert run_job(done["id"]) == "succeeded"  # ~1.6 MB of checkpoints
    waiting = client.post("/v1/jobs", json=JOB).json()
    assert client.post(f"/v1/jobs/{waiting['id']}/cancel").json()["status"] == "cancelled"
    set_quota(monkeypatch, 1)
    assert_storage_problem(client.post(f"/v1/jobs/{waiting['id']}/resume", json={}))
    assert client.get(f"/v1/jobs/{waiting['id']}").json()["status"] == "cancelled"
    set_quota(monkeypatch, 3)
    assert client.post(f"/v1/jobs/{waiting['id']}/resume", json={}).status_code == 202


def checkpoint_bytes() -> int:
    with session_scope() as s:
        return int(s.scalar(select(func.coalesce(func.sum(Checkpoint.size), 0))) or 0)


def sqlite_pages() -> tuple[int, int, int]:
    with get_engine().connect() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.execute(text(f"PRAGMA {p}")).scalar_one())
            for p in ("page_size", "page_count", "freelist_count")
        )


def test_deleting_a_job_frees_its_checkpoints(
    client: TestClient, api_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DELETE removes the rows; on SQLite their pages go to the free list and the next
    job's checkpoints are written into them (page_count does not grow)."""
    monkeypatch.setenv("DEEPZOO_CHECKPOINT_MIN_SECONDS", "0")
    get_settings.cache_clear()
    spec = {**JOB, "params": {"hidden": [256, 256]}, "train": {"epochs": 3, "keep_checkpoints": 3}}
    job = client.post("/v1/jobs", json=spec).json()
    assert run_job(job["id"]) == "succeeded"
    written = checkpoint_bytes()
    assert written > 2 * MiB
    sqlite = api_env.startswith("sqlite")
    if sqlite:
        page, pages_before, _ = sqlite_pages()
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert checkpoint_bytes() == 0
    assert client.get(f"/v1/jobs/{job['id']}/checkpoints").status_code == 404
    if not sqlite:
        return  # PostgreSQL: the dead tuples are reclaimed by (auto)vacuum
    _, pages, free = sqlite_pages()
    assert free * page >= 0.9 * written  # the deleted checkpoints' pages are free
    print(f"wrote {written:,} B; freed {free * page:,} B of {pages * page:,} B on delete")
    again = client.post("/v1/jobs", json=spec).json()
    assert run_job(again["id"]) == "succeeded"
    _, pages_after, _ = sqlite_pages()
    assert pages_after * page <= pages_before * page + 0.1 * written  # reused, not grown
    print(f"file {pages_before * page:,} B before, {pages_after * page:,} B after the rerun")
