"""Calibration metrics logged by the runner at the end of a job (real SQLite/PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.db.models import Job, Metric
from app.db.session import session_scope
from models.data import load
from models.registry import get_family
from tests.support.jobs import job_row, new_job
from workers.evaluation import calibration_metrics, served_state
from workers.runner import run_job


def metrics_of(job_id: str) -> dict[str, tuple[int, float | None]]:
    with session_scope() as s:
        rows = s.scalars(select(Metric).where(Metric.job_id == job_id)).all()
        return {r.name: (r.step, r.value) for r in rows if r.name.startswith("cal_")}


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        (
            {"model": "mc_dropout", "dataset": "sine_gap", "params": {"hidden": [16]}},
            {"cal_nll", "cal_rmse", "cal_coverage_95", "cal_width_95"},
        ),
        (
            {"model": "mlp", "dataset": "digits", "params": {"hidden": [16]}},
            {"cal_nll", "cal_accuracy", "cal_brier", "cal_ece"},
        ),
    ],
)
def test_finished_job_has_calibration_metrics(spec: dict[str, Any], names: set[str]) -> None:
    job_id = new_job({**spec, "train": {"epochs": 3, "batch_size": 128}})
    assert run_job(job_id) == "succeeded"
    got = metrics_of(job_id)
    assert set(got) == names
    assert {step for step, _ in got.values()} == {3}
    assert all(v is not None for _, v in got.values())
    job = job_row(job_id)
    assert names <= set(job.metrics or {})
    if "cal_ece" in names:
        assert 0 <= got["cal_ece"][1] <= 1 and 0 <= got["cal_brier"][1] <= 2  # type: ignore[operator]
        assert got["cal_accuracy"][1] > 0.3  # type: ignore[operator]
    else:
        assert 0 <= got["cal_coverage_95"][1] <= 1  # type: ignore[operator]


def test_logged_values_are_those_of_the_served_checkpoint() -> None:
    """mlp is deterministic: recomputing from the job's checkpoint gives the logged values."""
    job_id = new_job(
        {"model": "mlp", "dataset": "sine_gap", "params": {"hidden": [8]}, "train": {"epochs": 4}}
    )
    assert run_job(job_id) == "succeeded"
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        params = get_family("mlp").params(**job.spec["params"])
    state = served_state(job_id)
    assert state is not None
    again = calibration_metrics(get_family("mlp"), params, load("sine_gap"), state)
    assert again is not None
    logged = metrics_of(job_id)
    assert {k: v for k, (_, v) in logged.items()} == pytest.approx(again)
