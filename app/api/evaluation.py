"""Evaluation of a trained predictive model: uncertainty plot, calibration, active learning.

- ``GET  /v1/jobs/{id}/plot.png``: 1-D regression, predictive mean with epistemic and
  total bands over the training data.
- ``GET  /v1/jobs/{id}/reliability.png`` and ``GET /v1/jobs/{id}/calibration``: the
  test split's reliability diagram (classification) or coverage curve (regression).
- ``POST /v1/jobs/{id}/acquire``: the k pool inputs an acquisition function ranks
  highest (BALD, max entropy, epistemic variance), best first.

Every route goes through the predict endpoint's machinery: ``LoadedModel`` (the rate
limiter, the cached model, owner checked), the capability check, input parsing.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from app.api.common import PNG, PNGResponse, bounded_predict, parse_inputs, refuse_non_finite
from app.api.deps import JobModel, LoadedModel, job_dataset
from app.db.models import Job
from app.inference import Loaded, to_jsonable
from app.plots import coverage_png, reliability_png, uncertainty_png
from app.problems import Problem
from app.schemas import AcquireOut, AcquireRequest, CalibrationOut
from models import calibration as cal
from models.family import Capability, Unsupported

router = APIRouter(prefix="/v1/jobs", tags=["evaluation"])
MCSamples = Annotated[
    int | None, Query(ge=1, description="stochastic passes T (default: the model's own)")
]
Seed = Annotated[
    int,
    Query(ge=0, le=2**63 - 1, description="seeds the stochastic passes"),
]


def missing(out: dict[str, torch.Tensor], keys: tuple[str, ...], item: Loaded) -> None:
    absent = [k for k in keys if k not in out]
    if absent:
        raise Problem(
            409,
            f"model {item.family.name!r} does not predict {', '.join(absent)}; "
            "this view needs them",
        )


def _title(job: Job, mc: int, seed: int) -> str:
    label = job.name or job.id
    return f"{label} · {job.model} on {job.dataset} · T={mc} · seed {seed}"


def single_task(item: Loaded, what: str) -> None:
    """409 for a multitask model on a view drawn for one task (calibration, acquire)."""
    if item.info.task == "multitask":
        raise Unsupported(
            item.family,
            what,
            f" on {item.info.name!r}: it predicts several tasks and {what} ranks or bins "
            "one; ask predict for each task's outputs",
        )


def _prepare(model: JobModel) -> tuple[Loaded, Job]:
    item = model.load()
    job = model.job()
    item.family.capability(Capability.PREDICT)  # 409 naming what it can do
    return item, job


@router.get("/{job_id}/plot.png", response_class=PNGResponse, responses=PNG)
def plot_png(
    model: LoadedModel,
    mc_samples: MCSamples = None,
    seed: Seed = 0,
    points: Annotated[int, Query(ge=10, le=2000, description="grid size")] = 400,
    level: Annotated[float, Query(gt=0, lt=1, description="central band mass")] = 0.95,
) -> Response:
    """1-D regression: predictive mean, epistemic and total (epistemic + aleatoric) bands,
    the training data, over the data's range with 15% margins; below, both σ against x."""
    item, job = _prepare(model)
    info = item.info
    if info.task != "regression" or info.input_shape != (1,) or info.target_dim != 1:
        raise Problem(
            409,
            f"plot.png draws 1-D regression (one input, one target); {job.dataset!r} is "
            f"{info.task} with input shape {list(info.input_shape)}"
            + (f" and {info.target_dim} targets" if info.task == "regression" else ""),
        )
    data = job_dataset(job)
    x_train = data.x_train.reshape(-1).double().numpy()
    y_train = data.y_train.reshape(-1).double().numpy()
    lo, hi = (float(x_train.min()), float(x_train.max())) if len(x_train) else (-1.0, 1.0)
    margin = 0.15 * (hi - lo or 1.0)
    grid = np.linspace(lo - margin, hi + margin, points)
    x = torch.from_numpy(grid).float()[:, None]
    out, mc = bounded_predict(item, x, mc_samples, seed, input_field="points")
    missing(out, ("mean", "epistemic_var", "aleatoric_var"), item)
    png = uncertainty_png(
        grid=grid,
        mean=out["mean"].reshape(-1).double().numpy(),
        epistemic_var=out["epistemic_var"].reshape(-1).double().numpy(),
        aleatoric_var=out["aleatoric_var"].reshape(-1).double().numpy(),
        x_train=x_train,
        y_train=y_train,
        z=cal.z_score(level),
        level=level,
        title=_title(job, mc, seed),
    )
    return PNGResponse(png, headers={"Cache-Control": "private, max-age=60"})


def split_calibration(
    item: Loaded, job: Job, mc_samples: int | None, bins: int, seed: int = 0
) -> dict[str, Any]:
    """Calibration of the served model on the job's test split (CalibrationOut's fields)."""
    single_task(item, "calibration")
    data = job_dataset(job)
    if len(data.x_test) == 0:
        raise Problem(409, f"dataset {job.dataset!r} has no test split")
    try:
        out, mc = bounded_predict(item, data.x_test, mc_samples, seed, input_field="test split")
    except Problem as exc:  # the split's size is no request field: a conflict, not a 422
        if exc.extra.get("errors", [{}])[0].get("path") != "test split":
            raise
        message = exc.detail.split(": ", 1)[-1]
        raise Problem(
            409, f"the test split of {job.dataset!r} is too large for this model: {message}"
        ) from None
    y = data.y_test
    result: dict[str, Any] = {
        "job_id": job.id,
        "checkpoint": item.checkpoint_id,
        "task": item.info.task,
        "mc_samples": mc,
        "seed": seed,
        "n_test": len(y),
        "bins": None,
        "curve": None,
    }
    if item.info.task == "classification":
        missing(out, ("probs",), item)
        probs = out["probs"].double()
        result["metrics"] = cal.classification_metrics(probs, y, bins)
        result["bins"] = [asdict(b) for b in cal.reliability_bins(probs, y, bins)]
    else:
        missing(out, ("mean", "total_var"), item)
        mean, var = out["mean"].double(), out["total_var"].double()
        result["metrics"] = cal.regression_metrics(y.double(), mean, var)
        result["curve"] = cal.calibration_curve(y.double(), mean, var)
    result["metrics"] = {k: (v if math.isfinite(v) else None) for k, v in result["metrics"].items()}
    return result


Bins = Annotated[int, Query(ge=2, le=50, description="equal-width confidence bins")]


@router.get(
    "/{job_id}/calibration", response_model=None, responses={200: {"model": CalibrationOut}}
)
def calibration(
    model: LoadedModel,
    mc_samples: MCSamples = None,
    bins: Bins = cal.DEFAULT_BINS,
    seed: Seed = 0,
) -> JSONResponse:
    """Test-split calibration: metrics, and reliability bins or the coverage curve."""
    item, job = _prepare(model)
    return JSONResponse(split_calibration(item, job, mc_samples, bins, seed))


@router.get("/{job_id}/reliability.png", response_class=PNGResponse, responses=PNG)
def reliability(
    model: LoadedModel,
    mc_samples: MCSamples = None,
    bins: Bins = cal.DEFAULT_BINS,
    seed: Seed = 0,
) -> Response:
    """Reliability diagram (classification) or coverage calibration curve (regression)."""
    item, job = _prepare(model)
    result = split_calibration(item, job, mc_samples, bins, seed)
    title = _title(job, result["mc_samples"], seed) + f" · test n={result['n_test']}"
    m = result["metrics"]
    if result["task"] == "classification":
        png = reliability_png(
            [cal.Bin(**b) for b in result["bins"]],
            ece=m["ece"] if m["ece"] is not None else math.nan,
            accuracy=m["accuracy"] if m["accuracy"] is not None else math.nan,
            title=title,
        )
    else:
        cover = m["coverage_95"]
        title += f"\n95% interval covers {cover:.3f}" if cover is not None else ""
        png = coverage_png(result["curve"], title=title)
    return PNGResponse(png, headers={"Cache-Control": "private, max-age=60"})


SCORES = {"bald": "mutual_information", "max_entropy": "predictive_entropy"}


@router.post("/{job_id}/acquire", response_model=None, responses={200: {"model": AcquireOut}})
def acquire(body: AcquireRequest, model: LoadedModel) -> JSONResponse:
    """Active learning: the ``k`` pool inputs with the highest acquisition score, best first
    (ties by pool index)."""
    item = model.load()
    item.family.capability(Capability.PREDICT)  # 409 naming what it can do
    single_task(item, "acquire")
    x = parse_inputs(body.pool, item.info.input_shape, field="pool")
    if body.k > len(x):
        raise Problem(
            422,
            f"k: at most the pool's size ({len(x)})",
            errors=[{"path": "k", "message": "larger than the pool", "type": "less_than_equal"}],
        )
    task = item.info.task
    strategy = body.strategy or ("bald" if task == "classification" else "variance")
    needs = "regression" if strategy == "variance" else "classification"
    if task != needs:
        msg = f"strategy {strategy!r} needs a {needs} model; this one does {task}"
        raise Problem(
            422,
            f"strategy: {msg}",
            errors=[{"path": "strategy", "message": msg, "type": "value_error"}],
        )
    out, mc = bounded_predict(item, x, body.mc_samples, body.seed, input_field="pool")
    refuse_non_finite(out, "pool")
    if strategy == "variance":
        missing(out, ("epistemic_var",), item)
        score = out["epistemic_var"].double().flatten(1).sum(1)
    else:
        missing(out, (SCORES[strategy],), item)
        score = out[SCORES[strategy]].double().reshape(len(x))
    key = torch.nan_to_num(score, nan=-math.inf).tolist()
    order = sorted(range(len(x)), key=lambda i: (-key[i], i))[: body.k]
    scores = to_jsonable(score)
    items = [{"index": i, "input": body.pool[i], "score": scores[i]} for i in order]
    return JSONResponse(
        {
            "job_id": item.job_id,
            "checkpoint": item.checkpoint_id,
            "strategy": strategy,
            "mc_samples": mc,
            "seed": body.seed,
            "items": items,
        }
    )
