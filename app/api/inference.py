"""Inference on a trained job: predict (the generative capabilities: ``generative.py``;
evaluation views built on predict: ``evaluation.py``)."""

from __future__ import annotations

from statistics import NormalDist
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.common import bounded_predict, parse_inputs, refuse_non_finite
from app.api.deps import LoadedModel
from app.inference import to_jsonable
from app.schemas import PredictOut, PredictRequest
from models.data import DataInfo
from models.family import Capability

router = APIRouter(prefix="/v1/jobs", tags=["inference"])


@router.post("/{job_id}/predict", response_model=None, responses={200: {"model": PredictOut}})
def predict(
    body: PredictRequest,
    model: LoadedModel,
    level: Annotated[float, Query(gt=0, lt=1, description="central interval mass")] = 0.95,
) -> JSONResponse:
    """Predictions with epistemic and aleatoric uncertainty (mean over ``mc_samples`` passes,
    drawn from ``seed``: the same request gives the same answer)."""
    item = model.load()
    item.family.capability(Capability.PREDICT)  # 409 naming what it can do, before parsing
    x = parse_inputs(body.inputs, item.info.input_shape)
    out, mc = bounded_predict(item, x, body.mc_samples, body.seed)
    refuse_non_finite(out, "inputs")
    result: dict[str, Any] = {
        "job_id": item.job_id,
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
