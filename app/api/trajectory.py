"""The optimizer lab's trajectory: the path an optimizer took over a landscape and the loss
at each step (the TRAJECTORY capability, ``models.family.TrajectoryFn``), as JSON and as
contours with the path drawn on them.

The path is read from the job's metrics (``w0``, ``w1``, ``loss``, ``grad_norm``,
``step_norm``, ``converged_step``, as ``models.optim_lab`` logs them), live while the job
trains; step 0, the start, is the job's model as built. The contour is the family's
function on a grid; this router reads the family record only, never a family by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.common import PNG, PNGResponse
from app.api.deps import CurrentPrincipal, SessionDep, owned_job
from app.db.models import Job, Metric
from app.limits import INFERENCE_LIMITER
from models.data import DataInfo, load_data
from models.family import Capability
from models.registry import get_family

router = APIRouter(prefix="/v1/jobs", tags=["diagnostics"])
MAX_POINTS = 2_000  # logged steps one answer holds: a longer path is subsampled evenly
GRID = 160  # contour samples per axis of trajectory.png
MAX_ZOOM_OUT = 10.0  # a path leaving the landscape's bounds widens the plot, at most 10x
PATH_METRICS = ("loss", "w0", "w1", "grad_norm", "step_norm")


class TrajectoryOut(BaseModel):
    job_id: str
    landscape: str = Field(description="the job's dataset, a loss landscape")
    optimizer: dict[str, Any] = Field(description="the job's optimizer spec")
    dim: int = Field(description="coordinates of w; the path shows the first two")
    steps: list[int] = Field(description="optimizer steps, 0 the start")
    loss: list[float | None] = Field(description="f(w) after each step")
    path: list[list[float | None]] = Field(description="(w0, w1) after each step")
    grad_norm: list[float | None] = Field(
        description="‖∇f‖ at the point each step left (null at the start)"
    )
    step_norm: list[float | None] = Field(description="‖w_t − w_{t−1}‖ (null at the start)")
    minimum: float | None = Field(description="f*, the landscape's known minimum value")
    converged_step: int | None = Field(
        description="the first step where f − f* ≤ params.tolerance; null: not (yet)"
    )
    subsampled: bool = Field(description="true when the logged steps were more than 2,000")


def _start(job: Job) -> tuple[torch.nn.Module, DataInfo, Any]:
    """The job's model as built (its parameters: the start point), the landscape's info and
    the family's loss function; 409 for a model without the trajectory capability."""
    family = get_family(job.model)
    plane = family.capability(Capability.TRAJECTORY)  # 409 naming what it can do
    info = (
        DataInfo.from_json(job.data_info)
        if job.data_info is not None
        else load_data(job.dataset).info
    )
    with torch.device("cpu"):
        module = family.build(family.params(**job.spec["params"]), info)
    return module, info, plane


def _trajectory(session: Session, job: Job) -> dict[str, Any]:
    module, info, plane = _start(job)
    w = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    start_loss = float(plane(module, w.unsqueeze(0))["loss"][0])
    mine = (Metric.job_id == job.id) & Metric.name.in_(PATH_METRICS)
    steps = list(
        session.scalars(
            select(Metric.step).where(mine & (Metric.name == "w0")).distinct().order_by(Metric.step)
        ).all()
    )
    subsampled = len(steps) > MAX_POINTS - 1
    if subsampled:  # the start is one point; the first and last logged steps stay
        picks = np.linspace(0, len(steps) - 1, MAX_POINTS - 1).round().astype(int)
        steps = [steps[i] for i in picks]
    rows = session.execute(
        select(Metric.name, Metric.step, Metric.value).where(mine & Metric.step.in_(steps))
    ).all()
    cells = {(name, step): value for name, step, value in rows}
    done = session.scalar(
        select(Metric.step).where(
            (Metric.job_id == job.id) & (Metric.name == "converged_step")
        ).order_by(Metric.step)
    )  # fmt: skip
    return {
        "job_id": job.id,
        "landscape": job.dataset,
        "optimizer": job.spec["optimizer"],
        "dim": int(w.numel()),
        "steps": [0, *steps],
        "loss": [start_loss, *(cells.get(("loss", s)) for s in steps)],
        "path": [
            [float(w[0]), float(w[1]) if len(w) > 1 else 0.0],
            *([cells.get(("w0", s)), cells.get(("w1", s))] for s in steps),
        ],
        "grad_norm": [None, *(cells.get(("grad_norm", s)) for s in steps)],
        "step_norm": [None, *(cells.get(("step_norm", s)) for s in steps)],
        "minimum": info.extra.get("minimum"),
        "converged_step": done,
        "subsampled": subsampled,
    }


@router.get("/{job_id}/trajectory", response_model=TrajectoryOut)
def trajectory(job_id: str, principal: CurrentPrincipal, session: SessionDep) -> dict[str, Any]:
    """For the optimizer lab (``optim``): the path of the job's optimizer over its
    landscape, (w0, w1) and f(w) after each step from the start (step 0), with ‖∇f‖ and
    the step's length; at most 2,000 points, evenly spread over a longer run (the start
    and the last logged step always among them). Live while the job trains; null: not
    logged (or not finite)."""
    return _trajectory(session, owned_job(session, principal, job_id))


@router.get("/{job_id}/trajectory.png", response_class=PNGResponse, responses=PNG)
def trajectory_png(job_id: str, principal: CurrentPrincipal, session: SessionDep) -> PNGResponse:
    """For the optimizer lab (``optim``): filled contours of log10(f − f*) over the plane
    of the first two coordinates (a quadratic of more dimensions: the others at its
    minimum, the origin) with the job's path drawn on them, the start a circle, the last
    point a square, the known minima stars. The view is the landscape's bounds, widened
    (at most tenfold) to hold a path that leaves them."""
    from app.plots import trajectory_png as draw

    job = owned_job(session, principal, job_id)
    body = _trajectory(session, job)
    module, info, plane = _start(job)
    INFERENCE_LIMITER.take(principal.key_id)  # drawing is the work here
    path = np.array([[np.nan if v is None else v for v in p] for p in body["path"]], dtype=float)
    xs, ys = _view(info.extra["bounds"], path)
    gx, gy = np.meshgrid(xs, ys)
    points = torch.tensor(np.stack([gx.ravel(), gy.ravel()], axis=1), dtype=torch.float64)
    loss = plane(module, points)["loss"].numpy().reshape(gx.shape)
    spec = body["optimizer"]
    title = f"{job.model} on {job.dataset} · {job.id} · {spec.get('name')} lr {spec.get('lr')}"
    caption = "" if body["dim"] == 2 else f"w0, w1 of {body['dim']}; the others at the minimum"
    png = draw(
        xs, ys, loss, path,
        minima=[m[:2] for m in info.extra["minima"]], floor=body["minimum"], title=title,
        caption=caption,
    )  # fmt: skip
    return PNGResponse(png)


def _view(bounds: list[list[float]], path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid axes over ``bounds`` widened to the path's finite points, each axis at most
    ``MAX_ZOOM_OUT`` times the landscape's span about its centre."""
    axes = []
    for i, (lo, hi) in enumerate(bounds):
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        values = path[:, i][np.isfinite(path[:, i])]
        if len(values):
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
        lo, hi = max(lo, centre - MAX_ZOOM_OUT * half), min(hi, centre + MAX_ZOOM_OUT * half)
        pad = 0.02 * (hi - lo)
        axes.append(np.linspace(lo - pad, hi + pad, GRID))
    return axes[0], axes[1]
