"""Inference on a trained job: predict (other capabilities arrive with their families)."""

from __future__ import annotations

import math
import time
from statistics import NormalDist
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.deps import CurrentPrincipal, SessionDep, owned_job
from app.auth import Principal
from app.config import get_settings
from app.inference import Loaded, cache, load_model, to_jsonable
from app.limits import INFERENCE_LIMITER, MAX_FORWARD_ROWS
from app.problems import Problem, field_problem
from app.schemas import TERMINAL, PredictOut, PredictRequest
from models.data import DataInfo
from models.family import Capability

router = APIRouter(prefix="/v1/jobs", tags=["inference"])
REVALIDATE_SECONDS = 30.0


def loaded_model(session: SessionDep, principal: Principal, job_id: str) -> Loaded:
    """The job's model from the cache; the database is read only on a miss or to revalidate."""
    models = cache(get_settings().inference_cache_size)
    item = models.get(job_id)
    if item is not None and item.owner != principal.owner:
        raise Problem(404, f"no job {job_id!r}")
    if item is not None and time.monotonic() - item.checked_at < REVALIDATE_SECONDS:
        return item
    job = owned_job(session, principal, job_id)
    if item is not None and item.checkpoint_id == job.checkpoint_id:
        if job.status in TERMINAL:
            item.checked_at = time.monotonic()
        return item
    item = load_model(session, job)
    item.checked_at = time.monotonic() if job.status in TERMINAL else 0.0
    models.put(item)
    return item


def require(item: Loaded, capability: Capability) -> None:
    if capability not in item.family.capabilities:
        can = ", ".join(sorted(c.value for c in item.family.capabilities))
        raise Problem(
            409,
            f"model {item.family.name!r} cannot {capability.value}; it can: {can}",
            capabilities=sorted(c.value for c in item.family.capabilities),
        )


def parse_inputs(raw: list[Any], shape: tuple[int, ...], field: str = "inputs") -> torch.Tensor:
    """A (N, *shape) float32 tensor, or a 422 naming the offending input."""
    settings = get_settings()

    if not raw:
        raise field_problem(field, "give at least one input")
    if len(raw) > settings.max_inputs:
        raise Problem(
            413,
            f"{field}: at most {settings.max_inputs} inputs per request",
            errors=[{"path": field, "message": "too many inputs", "type": "too_long"}],
        )
    flat = shape == (1,)
    x = np.empty((len(raw), *shape), dtype=np.float64)
    for i, item in enumerate(raw):
        if flat and isinstance(item, (int, float)) and not isinstance(item, bool):
            x[i] = float(item) if abs(item) < 1e300 else math.inf  # refused below
            continue
        try:
            arr = np.asarray(item, dtype=np.float64)  # None becomes NaN: refused below
        except (TypeError, ValueError, OverflowError):
            raise field_problem(f"{field}[{i}]", "not a number or an array of numbers") from None
        if arr.shape != shape:
            raise field_problem(f"{field}[{i}]", f"shape {list(arr.shape)}, expected {list(shape)}")
        x[i] = arr
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    bad_rows = np.where(~np.isfinite(x32.reshape(len(raw), -1)).all(axis=1))[0]
    if len(bad_rows):
        raise field_problem(f"{field}[{int(bad_rows[0])}]", "NaN, inf or a value beyond float32")
    return torch.from_numpy(x32)


def mc_samples_for(item: Loaded, requested: int | None, rows: int, field: str) -> int:
    """The pass count T: requested or the family's default; 422 over the limit, 413 too big."""
    settings = get_settings()
    mc = requested or item.family.default_mc_samples
    if mc > settings.max_mc_samples:
        raise Problem(
            422,
            f"{field}: at most {settings.max_mc_samples}",
            errors=[{"path": field, "message": "too large", "type": "less_than_equal"}],
        )
    if mc * rows > MAX_FORWARD_ROWS:
        raise Problem(
            413,
            f"{field} × inputs is over {MAX_FORWARD_ROWS:,} forward rows; ask for fewer",
            errors=[{"path": field, "message": "request too large", "type": "too_long"}],
        )
    return mc


@router.post("/{job_id}/predict", response_model=None, responses={200: {"model": PredictOut}})
def predict(
    job_id: str,
    body: PredictRequest,
    principal: CurrentPrincipal,
    session: SessionDep,
    level: Annotated[float, Query(gt=0, lt=1, description="central interval mass")] = 0.95,
) -> JSONResponse:
    """Predictions with epistemic and aleatoric uncertainty (mean over ``mc_samples`` passes)."""
    INFERENCE_LIMITER.take(principal.key_id)
    item = loaded_model(session, principal, job_id)
    require(item, Capability.PREDICT)
    x = parse_inputs(body.inputs, item.info.input_shape)
    mc = mc_samples_for(item, body.mc_samples, len(x), "mc_samples")
    assert item.family.predict is not None
    with torch.inference_mode():
        out = item.family.predict(item.module, x, mc)
    result: dict[str, Any] = {
        "job_id": job_id,
        "checkpoint": item.checkpoint_id,
        "task": item.info.task,
        "mc_samples": mc,
    }
    result.update(prediction_body(item.info, out, level))
    return JSONResponse(result)  # plain floats already: skip FastAPI's re-encoding pass


def prediction_body(info: DataInfo, out: dict[str, torch.Tensor], level: float) -> dict[str, Any]:
    """The family's outputs as JSON; a regression gets its interval. A multitask model's
    ``<task>.<output>`` keys are grouped under ``tasks``, each task as a single-task body."""
    if info.task == "multitask":
        tasks = {}
        for t in info.tasks:
            own = {k.split(".", 1)[1]: v for k, v in out.items() if k.startswith(f"{t.name}.")}
            tasks[t.name] = {"kind": t.kind, **prediction_body_single(t.kind, own, level)}
        return {"tasks": tasks}
    return prediction_body_single(info.task, out, level)


def prediction_body_single(kind: str, out: dict[str, torch.Tensor], level: float) -> dict[str, Any]:
    body: dict[str, Any] = to_jsonable(out)
    if kind == "regression":
        z = NormalDist().inv_cdf(0.5 + level / 2)
        half = z * out["total_var"].clamp_min(0).sqrt()
        body["interval"] = {
            "level": level,
            "lower": to_jsonable(out["mean"] - half),
            "upper": to_jsonable(out["mean"] + half),
        }
    return body
