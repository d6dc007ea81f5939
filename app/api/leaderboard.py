"""The likelihood leaderboard: the caller's finished jobs of every likelihood family on one
dataset, ranked by their test log-likelihood (JSON, or a PNG bar chart).

A family is a likelihood family when its record declares a ``LikelihoodReport``
(``models/family.py``): the metrics its fit logs on the fixed test split and whether the
number is exact, a bound or an estimate. This router reads that declaration only, so a
new likelihood family is ranked without a change here.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import ColumnElement, case, select
from sqlalchemy.orm import Session

from app.api.common import PNG, PNGResponse
from app.api.deps import CurrentPrincipal, SessionDep
from app.auth import Principal
from app.db.models import Job
from app.limits import INFERENCE_LIMITER, count_parameters
from app.problems import field_problem
from app.schemas import LeaderboardEntry, LeaderboardMetric, LeaderboardOut
from models.data import DataInfo, load_data
from models.family import Family, LikelihoodReport, Params
from models.registry import REGISTRY

router = APIRouter(prefix="/v1", tags=["leaderboard"])
MAX_ENTRIES = 200  # one JSON answer
MAX_BARS = 50  # one PNG


def likelihood_families() -> dict[str, Family]:
    return {name: f for name, f in REGISTRY.items() if f.likelihood is not None}


def ranked_datasets() -> list[str]:
    """The built-ins some likelihood family trains on (no likelihood family takes uploads)."""
    return sorted({d for f in likelihood_families().values() for d in f.datasets})


def _report(family: Family) -> LikelihoodReport:
    assert family.likelihood is not None
    return family.likelihood


def _dataset_info(dataset: str) -> DataInfo:
    if dataset not in ranked_datasets():
        raise field_problem(
            "dataset",
            f"no likelihood family trains on {dataset!r}; ranked: {', '.join(ranked_datasets())}",
        )
    return load_data(dataset).info


def _value(name: str) -> ColumnElement[Any]:
    """The job's latest value of metric ``name`` (``jobs.metrics`` holds each metric's
    latest: a ``test_*`` metric is logged once, for the final weights)."""
    return Job.metrics[name].as_float()


def leaderboard(
    session: Session, principal: Principal, dataset: str, metric: LeaderboardMetric, limit: int
) -> LeaderboardOut:
    info = _dataset_info(dataset)
    families = {n: f for n, f in likelihood_families().items() if dataset in f.datasets}
    ranked_by = {
        n: (_report(f).nll if metric == "nll" else _report(f).bits_metric(info))
        for n, f in families.items()
    }
    whens = [(Job.model == n, _value(name)) for n, name in ranked_by.items() if name is not None]
    if not whens:  # bits per dimension of a density: no family reports them
        raise field_problem(
            "metric", f"{dataset} is continuous: no bits per dimension; rank by nll"
        )
    score = case(*whens, else_=None)
    # one query, bounded by ``limit``: ranked in the database on the job rows' metrics
    rows = session.scalars(
        select(Job)
        .where(
            Job.owner == principal.owner,
            Job.dataset == dataset,
            Job.status == "succeeded",
            Job.model.in_([n for n, name in ranked_by.items() if name is not None]),
            score.is_not(None),
        )
        .order_by(score.asc(), Job.finished_at.asc(), Job.id.asc())
        .limit(limit)
    ).all()
    entries = [_entry(i + 1, job, families[job.model], info) for i, job in enumerate(rows)]
    return LeaderboardOut(dataset=dataset, metric=metric, entries=entries)


def _entry(rank: int, job: Job, family: Family, info: DataInfo) -> LeaderboardEntry:
    report = _report(family)
    metrics, provenance = job.metrics or {}, job.provenance or {}
    spec_params = (job.spec or {}).get("params") or {}
    params = _params(family, spec_params)
    bits = report.bits_metric(info)
    train = (job.spec or {}).get("train") or {}
    return LeaderboardEntry(
        rank=rank,
        job_id=job.id,
        name=job.name,
        model=job.model,
        params=_short(family, spec_params),
        nll=_finite(metrics.get(report.nll)),
        bits_per_dim=_finite(metrics.get(bits)) if bits else None,
        kind=report.kind_for(info, params),
        stderr=_finite(metrics.get(report.stderr)) if report.stderr else None,
        samples=_count(metrics.get(report.samples)) if report.samples else None,
        parameters=_parameters(job, family, info, params, provenance),
        training_seconds=_training_seconds(job, provenance),
        epochs=_count(train.get("epochs")),
        steps=_count(train.get("steps")),
        finished_at=job.finished_at,
    )


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _count(v: Any) -> int | None:
    f = _finite(v)
    return int(f) if f is not None else None


def _params(family: Family, spec_params: dict[str, Any]) -> Params | None:
    try:
        return family.params(**spec_params)
    except Exception:  # a spec written under another version of the family's params
        return None


def _short(family: Family, spec_params: dict[str, Any]) -> dict[str, Any]:
    """The params that differ from the family's defaults: what tells two entries apart."""
    try:
        defaults = family.params().model_dump(mode="json")
    except Exception:  # a family whose params have no defaults
        return dict(spec_params)
    return {k: v for k, v in spec_params.items() if defaults.get(k, object()) != v}


def _parameters(
    job: Job, family: Family, info: DataInfo, params: Params | None, provenance: dict[str, Any]
) -> int | None:
    """The trained model's parameters: recorded at the job's start, or (jobs from before
    the runner recorded them) counted on the meta device."""
    recorded = provenance.get("parameters")
    if isinstance(recorded, int):
        return recorded
    if params is None:
        return None
    try:
        stored = DataInfo.from_json(job.data_info) if job.data_info else info
        return count_parameters(family.name, stored, params)
    except Exception:
        return None


def _training_seconds(job: Job, provenance: dict[str, Any]) -> float | None:
    """Worker seconds summed over the job's runs; for a job from before the runner
    recorded them, started_at..finished_at (which spans any wait before a resume)."""
    recorded = _finite(provenance.get("train_seconds"))
    if recorded is not None:
        return recorded
    start, end = job.started_at, job.finished_at
    if isinstance(start, datetime) and isinstance(end, datetime):
        return max(0.0, (end - start).total_seconds())
    return None


DatasetQuery = Annotated[
    str, Query(max_length=64, description="a built-in dataset a likelihood family trains on")
]
MetricQuery = Annotated[
    LeaderboardMetric,
    Query(description="nll (nats per example) or bits_per_dim (discrete data); lower is better"),
]


@router.get("/leaderboard", response_model=LeaderboardOut)
def get_leaderboard(
    principal: CurrentPrincipal,
    session: SessionDep,
    dataset: DatasetQuery,
    metric: MetricQuery = "nll",
    limit: Annotated[int, Query(ge=1, le=MAX_ENTRIES)] = 100,
) -> LeaderboardOut:
    """The caller's succeeded jobs of the likelihood families on ``dataset``, best first,
    ranked by their test NLL (or bits per dimension) on its fixed test split."""
    return leaderboard(session, principal, dataset, metric, limit)


@router.get("/leaderboard.png", response_class=PNGResponse, responses=PNG)
def get_leaderboard_png(
    principal: CurrentPrincipal,
    session: SessionDep,
    dataset: DatasetQuery,
    metric: MetricQuery = "nll",
    limit: Annotated[int, Query(ge=1, le=MAX_BARS)] = 25,
) -> PNGResponse:
    """The leaderboard as horizontal bars, best on top: exact values, bounds and estimates
    (with their standard errors) told apart. Drawing takes the inference rate limit."""
    from app.plots import leaderboard_png

    INFERENCE_LIMITER.take(principal.key_id)  # a figure costs CPU, as inference does
    board = leaderboard(session, principal, dataset, metric, limit)
    bars = []
    for e in board.entries:
        value = e.nll if metric == "nll" else e.bits_per_dim
        if value is not None:
            bars.append((f"{e.model} {e.job_id[-6:]}", value, e.kind, _stderr_in(metric, e)))
    unit = "nats" if metric == "nll" else "bits/dim"
    title = f"{dataset}: test {'NLL' if metric == 'nll' else 'bits per dimension'}"
    return PNGResponse(leaderboard_png(bars, title=title, unit=unit))


def _stderr_in(metric: LeaderboardMetric, e: LeaderboardEntry) -> float | None:
    """The standard error in the plotted unit (bits/dim scale as the NLL does)."""
    if e.stderr is None:
        return None
    if metric == "nll":
        return e.stderr
    if e.nll and e.bits_per_dim is not None:
        return e.stderr * abs(e.bits_per_dim / e.nll)  # the same 1 / (D ln 2)
    return None
