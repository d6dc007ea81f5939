"""A recurrent model's gradients through time, as its fit logged them: ‖∂L/∂c_k‖ per time
step k at each evaluation (the GRADIENTS capability, ``models.family.GradientsFn``), so
vanishing and exploding gradients are seen at a glance.

The profile is read from the job's metrics (``GRADIENT_METRICS`` + k), not from a
checkpoint: the picture covers the whole run so far, live while the job trains. This
router reads the family record only, never a family by name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.common import PNG, PNGResponse
from app.api.deps import CurrentPrincipal, SessionDep, owned_job
from app.db.models import Job, Metric
from app.limits import INFERENCE_LIMITER
from app.problems import Problem
from models.family import GRADIENT_METRICS, Capability
from models.registry import get_family

router = APIRouter(prefix="/v1/jobs", tags=["diagnostics"])
MAX_ROWS = 200  # evaluations one answer holds: a longer run is subsampled evenly


class GradientsOut(BaseModel):
    job_id: str
    steps: list[int] = Field(description="training steps (epochs or optimizer steps) logged")
    positions: list[int] = Field(description="the recorded time steps k, 1-based")
    grad_norm: list[list[float | None]] = Field(
        description="‖∂L/∂c_k‖, a row per training step, a column per position"
    )
    jacobian_norm: list[list[float | None]] = Field(
        description="‖∂c_T/∂c_k‖ (spectral norm), a row per training step"
    )


def _profile(session: Session, job: Job) -> dict[str, Any]:
    """The logged profile, at most MAX_ROWS evaluations; 409 for a model without the
    capability or a job that has logged none yet."""
    get_family(job.model).capability(Capability.GRADIENTS)  # 409 naming what it can do
    grad, jac = GRADIENT_METRICS
    named = Metric.name.startswith(grad, autoescape=True) | Metric.name.startswith(
        jac, autoescape=True
    )
    mine = (Metric.job_id == job.id) & named
    steps = session.scalars(select(Metric.step).where(mine).distinct().order_by(Metric.step)).all()
    if not steps:
        raise Problem(409, f"job {job.id} has logged no gradient profile yet (status {job.status})")
    if len(steps) > MAX_ROWS:
        steps = [steps[i] for i in np.linspace(0, len(steps) - 1, MAX_ROWS).round().astype(int)]
    rows = session.execute(
        select(Metric.name, Metric.step, Metric.value).where(mine & Metric.step.in_(steps))
    ).all()
    cells: dict[tuple[str, int, int], float | None] = {}
    for name, step, value in rows:
        prefix = grad if name.startswith(grad) else jac
        k = name[len(prefix) :]
        if k.isdigit():  # a metric merely sharing the prefix is not a time step
            cells[prefix, step, int(k)] = value
    positions = sorted({k for _, _, k in cells})

    def grid(prefix: str) -> list[list[float | None]]:
        return [[cells.get((prefix, s, k)) for k in positions] for s in steps]

    return {
        "job_id": job.id,
        "steps": list(steps),
        "positions": positions,
        "grad_norm": grid(grad),
        "jacobian_norm": grid(jac),
    }


@router.get("/{job_id}/gradients", response_model=GradientsOut)
def gradients(job_id: str, principal: CurrentPrincipal, session: SessionDep) -> dict[str, Any]:
    """The numbers behind gradients.png: for models with gradient diagnostics (recurrent
    ones), ‖∂L/∂c_k‖ and ‖∂c_T/∂c_k‖ on the fixed probe batch at each evaluation (a row)
    and recorded time step k (a column; at most 32, spread over the sequence); at most 200
    evaluations, evenly spread over a longer run. null: not logged (or not finite)."""
    return _profile(session, owned_job(session, principal, job_id))


@router.get("/{job_id}/gradients.png", response_class=PNGResponse, responses=PNG)
def gradients_png(
    job_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    which: Annotated[
        Literal["grad", "jacobian"],
        Query(description="grad: ‖∂L/∂c_k‖; jacobian: ‖∂c_T/∂c_k‖"),
    ] = "grad",
) -> PNGResponse:
    """For models with gradient diagnostics (recurrent ones): a heat map of log10
    ‖∂L/∂c_k‖ (or of ‖∂c_T/∂c_k‖), time step k across, training step down. A vanishing
    gradient (a tanh cell whose W has spectral radius below 1) fades to the left, an
    exploding one glows; an LSTM's or a GRU's stays flat."""
    from app.plots import gradients_png as draw

    job = owned_job(session, principal, job_id)
    profile = _profile(session, job)
    INFERENCE_LIMITER.take(principal.key_id)  # drawing is the work here
    values = np.array(profile[f"{which}_norm"], dtype=float)  # None -> nan: grey
    label = "log10 " + ("‖∂L/∂c_k‖" if which == "grad" else "‖∂c_T/∂c_k‖")
    title = f"{job.model} on {job.dataset} · {job.id} · {label}"
    png = draw(
        values, positions=profile["positions"], steps=profile["steps"], title=title, label=label
    )
    return PNGResponse(png)
