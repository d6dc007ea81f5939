"""The runner in process on an upload read from the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import io

import numpy as np

from app.api.jobs import SPEC_ADAPTER, create_job
from app.auth import Principal
from app.datasets import load_dataset, store
from app.db.models import Job
from app.db.session import session_scope
from models.data.upload import parse
from workers.runner import run_job

ME = Principal("key_test", "owner_test", False)


def test_a_job_trains_on_an_upload_from_the_database() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    buf = io.BytesIO()
    np.savez(buf, x=x, y=(x[:, 0] > 0).astype(int))
    blob = buf.getvalue()
    with session_scope() as s:
        ds_id = store(s, ME.owner, "signs", blob, parse(blob)).id
    spec = {"model": "mlp", "dataset": ds_id, "params": {"hidden": [8]}, "train": {"epochs": 3}}
    with session_scope() as s:
        job_id = create_job(s, ME, SPEC_ADAPTER.validate_python(spec))[0].id
    assert run_job(job_id) == "succeeded"
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert job.data_info is not None
        assert job.data_info["task"] == "classification" and job.data_info["n_classes"] == 2
        assert job.data_info["input_shape"] == [3] and job.data_info["n_train"] == 42
        assert job.provenance["dataset_sha256"] == load_dataset(ds_id).sha256()
        assert "test_accuracy" in job.metrics
    # the same split every time
    assert load_dataset(ds_id).sha256() == load_dataset(ds_id).sha256()
