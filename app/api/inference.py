"""Inference on a trained job: predict (other capabilities arrive with their families)."""

from __future__ import annotations

import logging
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
from app.limits import (
    INFERENCE_LIMITER,
    MAX_INFERENCE_WORK,
    RowCost,
    check_work,
    chunk_size,
)
from app.problems import Problem, field_problem
from app.schemas import TERMINAL, PredictOut, PredictRequest
from models import calibration as cal
from models.data import DataInfo
from models.family import Capability, Family
from models.uncertainty import seeded_inference

router = APIRouter(prefix="/v1/jobs", tags=["inference"])
log = logging.getLogger("deepzoo.inference")
FALLBACK_BYTES_PER_ROW = 64 * 1024  # a model whose memory could not be measured
REVALIDATE_SECONDS = 30.0


def loaded_model(session: SessionDep, principal: Principal, job_id: str) -> Loaded:
    """The job's model from the cache; the database is read only on a miss or to revalidate."""
    models = cache()
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


def capabilities_of(family: Family) -> list[str]:
    """Everything a model answers: its declared capabilities, and ``encode``, ``decode``
    and ``interpolate`` where it has an encoder or a decoder (the generative routes' test)."""
    can = {c.value for c in family.capabilities}
    if family.encode is not None:
        can.add("encode")
    if family.decode is not None and family.latent_dim is not None:
        can |= {"decode", "interpolate"}
    return sorted(can)


def cannot(family: Family, what: str, why: str = "") -> Problem:
    """409: the model cannot do ``what``; says what it can (the catalog's list)."""
    can = capabilities_of(family)
    return Problem(
        409,
        f"model {family.name!r} cannot {what}{why}; it can: {', '.join(can)}",
        capabilities=can,
    )


def require(item: Loaded, capability: Capability) -> None:
    if capability not in item.family.capabilities:
        raise cannot(item.family, capability.value)


def _numbers_only(item: Any) -> bool:
    """Whether ``item`` is a number or nested lists of numbers: JSON numbers only, no
    booleans, strings or nulls (which ``np.asarray`` would coerce)."""
    stack = [item]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
    return True


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
        if not _numbers_only(item):
            raise field_problem(f"{field}[{i}]", "not a number or an array of numbers")
        try:
            arr = np.asarray(item, dtype=np.float64)
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


def mc_samples_for(item: Loaded, requested: int | None, field: str) -> tuple[int, int, int]:
    """(T asked, T run, forward rows per input): T asked is ``requested`` or the family's
    default (422 over DEEPZOO_MAX_MC_SAMPLES); T run is what responses echo (an
    ensemble's members, 1 for a deterministic model); MC dropout forwards T rows per input,
    every other family one (an ensemble's members are in its parameters)."""
    settings = get_settings()
    mc = requested or item.family.default_mc_samples
    if mc > settings.max_mc_samples:
        raise Problem(
            422,
            f"{field}: at most {settings.max_mc_samples}",
            errors=[{"path": field, "message": "too large", "type": "less_than_equal"}],
        )
    if item.family.mc_passes is None:
        return mc, mc, mc
    return mc, item.family.mc_passes(item.module, mc), 1


def bounded_predict(
    item: Loaded,
    x: torch.Tensor,
    requested_mc: int | None,
    seed: int,
    *,
    mc_field: str = "mc_samples",
    input_field: str = "inputs",
) -> tuple[dict[str, torch.Tensor], int]:
    """The family's predict on ``x`` with its work bounded (parameters × forward rows) and
    its memory chunked under DEEPZOO_INFERENCE_MEMORY_MB (422 naming the field beyond);
    stochastic passes drawn from ``seed``. Returns the outputs and the T to echo."""
    assert item.family.predict is not None  # require(item, PREDICT) came first
    predict_fn = item.family.predict
    mc, echo, rows = mc_samples_for(item, requested_mc, mc_field)
    if rows == 1:
        fields = [input_field]
    elif item.parameters * rows > MAX_INFERENCE_WORK or requested_mc is not None:
        fields = [mc_field, input_field]
    else:
        fields = [input_field, mc_field]
    what = f"{input_field} × {mc_field}" if rows > 1 else input_field
    check_work(item.parameters, len(x) * rows, fields, what)
    cost = item.costs.get("predict")
    if cost is None:
        shape = item.info.input_shape
        try:
            with seeded_inference(0):
                cost = RowCost.measure(lambda n: predict_fn(item.module, torch.zeros(n, *shape), 1))
        except Exception as exc:  # never seen; without a measure, the old fixed batches
            log.warning("no memory estimate for predict of job %s: %s", item.job_id, exc)
            cost = RowCost(0, max(1, FALLBACK_BYTES_PER_ROW))
        item.costs["predict"] = cost
    per_chunk = chunk_size(cost, rows, [mc_field] if rows > 1 else [input_field], "passes")
    with seeded_inference(seed):
        out = cal.predict_batched(predict_fn, item.module, x, mc, batch_size=per_chunk)
    return out, echo


def refuse_non_finite(out: dict[str, torch.Tensor], field: str) -> None:
    """422 naming the first input whose prediction overflowed to NaN or inf (an input far
    outside the training data can take a network there)."""
    bad: torch.Tensor | None = None
    for v in out.values():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() >= 1:
            rows = ~torch.isfinite(v.reshape(len(v), -1)).all(1)
            bad = rows if bad is None else bad | rows
    if bad is not None and bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise field_problem(
            f"{field}[{i}]",
            "the prediction overflows to NaN or inf: the input lies too far outside the "
            "data the model was trained on",
        )


@router.post("/{job_id}/predict", response_model=None, responses={200: {"model": PredictOut}})
def predict(
    job_id: str,
    body: PredictRequest,
    principal: CurrentPrincipal,
    session: SessionDep,
    level: Annotated[float, Query(gt=0, lt=1, description="central interval mass")] = 0.95,
) -> JSONResponse:
    """Predictions with epistemic and aleatoric uncertainty (mean over ``mc_samples`` passes,
    drawn from ``seed``: the same request gives the same answer)."""
    INFERENCE_LIMITER.take(principal.key_id)
    item = loaded_model(session, principal, job_id)
    require(item, Capability.PREDICT)
    x = parse_inputs(body.inputs, item.info.input_shape)
    out, mc = bounded_predict(item, x, body.mc_samples, body.seed)
    refuse_non_finite(out, "inputs")
    result: dict[str, Any] = {
        "job_id": job_id,
        "checkpoint": item.checkpoint_id,
        "task": item.info.task,
        "mc_samples": mc,
        "seed": body.seed,
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
