"""The optimizer lab's paths, read back from the metrics a TRAJECTORY family logs (``w0``,
``w1``, ``loss``, ``grad_norm``, ``step_norm``, ``converged_step``, as ``models.optim_lab``
does), and the landscape under them: what ``GET /v1/jobs/{id}/trajectory`` answers and
``trajectory.png`` draws, and what a sweep's ``plot.png`` draws for its children's paths,
all on one contour. The family record is read, never a family by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Job, Metric
from models.data import DataInfo, load_data
from models.family import Capability, TrajectoryFn
from models.registry import get_family

MAX_POINTS = 2_000  # logged steps one path holds: a longer one is subsampled evenly
GRID = 160  # contour samples per axis
MAX_ZOOM_OUT = 10.0  # paths leaving the landscape's bounds widen the view, at most 10x
PATH_METRICS = ("loss", "w0", "w1", "grad_norm", "step_norm")


def has_paths(model: str) -> bool:
    """Whether jobs of this family log an optimizer's path (the TRAJECTORY capability)."""
    return Capability.TRAJECTORY in get_family(model).capabilities


def start(job: Job) -> tuple[torch.nn.Module, DataInfo, TrajectoryFn]:
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


def read(session: Session, job: Job, max_points: int | None = None) -> dict[str, Any]:
    """The job's path from its start (step 0, the model as built) through its logged steps,
    at most ``max_points`` (``MAX_POINTS``) points, the start, the first and the last logged
    steps among them; the fields of ``TrajectoryOut``."""
    max_points = max_points or MAX_POINTS
    module, info, plane = start(job)
    w = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    start_loss = float(plane(module, w.unsqueeze(0))["loss"][0])
    mine = (Metric.job_id == job.id) & Metric.name.in_(PATH_METRICS)
    steps = list(
        session.scalars(
            select(Metric.step).where(mine & (Metric.name == "w0")).distinct().order_by(Metric.step)
        ).all()
    )
    subsampled = len(steps) > max_points - 1
    if subsampled:  # the start is one point; the first and last logged steps stay
        picks = np.linspace(0, len(steps) - 1, max_points - 1).round().astype(int)
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


def as_array(path: Sequence[Sequence[float | None]]) -> np.ndarray:
    """A path's points (n, 2), a null coordinate as NaN."""
    return np.array([[np.nan if v is None else v for v in p] for p in path], dtype=float)


def view(bounds: list[list[float]], paths: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Grid axes over ``bounds`` widened to the paths' finite points, each axis at most
    ``MAX_ZOOM_OUT`` times the landscape's span about its centre."""
    axes = []
    for i, (lo, hi) in enumerate(bounds):
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        for path in paths:
            values = path[:, i][np.isfinite(path[:, i])]
            if len(values):
                lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
        lo, hi = max(lo, centre - MAX_ZOOM_OUT * half), min(hi, centre + MAX_ZOOM_OUT * half)
        pad = 0.02 * (hi - lo)
        axes.append(np.linspace(lo - pad, hi + pad, GRID))
    return axes[0], axes[1]


def landscape(
    job: Job, paths: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, DataInfo]:
    """The job's loss over the plane of its first two coordinates (the others where the
    family's ``TrajectoryFn`` sets them), on the view that holds ``paths``:
    (xs, ys, loss (len(ys), len(xs)), the landscape's info)."""
    module, info, plane = start(job)
    xs, ys = view(info.extra["bounds"], paths)
    gx, gy = np.meshgrid(xs, ys)
    points = torch.tensor(np.stack([gx.ravel(), gy.ravel()], axis=1), dtype=torch.float64)
    loss = plane(module, points)["loss"].numpy().reshape(gx.shape)
    return xs, ys, loss, info
