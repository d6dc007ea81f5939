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

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app import trajectories
from app.api.common import PNG, PNGResponse
from app.api.deps import CurrentPrincipal, SessionDep, owned_job
from app.limits import INFERENCE_LIMITER

router = APIRouter(prefix="/v1/jobs", tags=["diagnostics"])


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


@router.get("/{job_id}/trajectory", response_model=TrajectoryOut)
def trajectory(job_id: str, principal: CurrentPrincipal, session: SessionDep) -> dict[str, Any]:
    """For the optimizer lab (``optim``): the path of the job's optimizer over its
    landscape, (w0, w1) and f(w) after each step from the start (step 0), with ‖∇f‖ and
    the step's length; at most 2,000 points, evenly spread over a longer run (the start
    and the last logged step always among them). Live while the job trains; null: not
    logged (or not finite)."""
    return trajectories.read(session, owned_job(session, principal, job_id))


@router.get("/{job_id}/trajectory.png", response_class=PNGResponse, responses=PNG)
def trajectory_png(job_id: str, principal: CurrentPrincipal, session: SessionDep) -> PNGResponse:
    """For the optimizer lab (``optim``): filled contours of log10(f − f*) over the plane
    of the first two coordinates (a quadratic of more dimensions: the others at its
    minimum, the origin) with the job's path drawn on them, the start a circle, the last
    point a square, the known minima stars. The view is the landscape's bounds, widened
    (at most tenfold) to hold a path that leaves them."""
    from app.plots import trajectory_png as draw

    job = owned_job(session, principal, job_id)
    body = trajectories.read(session, job)
    INFERENCE_LIMITER.take(principal.key_id)  # drawing is the work here
    path = trajectories.as_array(body["path"])
    xs, ys, loss, info = trajectories.landscape(job, [path])
    spec = body["optimizer"]
    title = f"{job.model} on {job.dataset} · {job.id} · {spec.get('name')} lr {spec.get('lr')}"
    caption = "" if body["dim"] == 2 else f"w0, w1 of {body['dim']}; the others at the minimum"
    png = draw(
        xs, ys, loss, [("", path)],
        minima=[m[:2] for m in info.extra["minima"]], floor=body["minimum"], title=title,
        caption=caption,
    )  # fmt: skip
    return PNGResponse(png)
