"""``optim``: the optimizer lab, every optimizer of ``models.optim`` on an analytic landscape.

What it shows: the notes' optimizers side by side on the functions they are judged by
(``models.data.landscapes``: Rosenbrock's valley, Beale's plateaus, a saddle, an
ill-conditioned quadratic in any dimension, Himmelblau's four minima, and the logistic
loss of a real data set), and Newton's method ``w − H⁻¹ηg`` with the exact Hessian by
autograd, in one step on any quadratic whatever its condition number. The "model" is one
point ``w`` (float64, one value per coordinate), started at the landscape's start or
``start``; the job's optimizer (``optimizer.name``) moves it for ``train.steps`` steps
(its budget unit: there is no data to count epochs of).

Metrics, logged at step t for the point after t updates (the start, step 0, is the
built model's own ``w`` and ``GET /v1/jobs/{id}/trajectory`` adds it): ``loss`` f(w_t),
``w0``, ``w1`` (its first two coordinates, the plotted plane), ``grad_norm`` ‖∇f‖ at the
point the step left, ``step_norm`` ‖w_t − w_{t−1}‖, and once ``converged_step``: the
first t where f(w_t) − f* ≤ ``tolerance`` (landscapes whose minimum f* is known). At the
last step, ``settled_step``: the t from which f − f* ≤ ``tolerance`` holds to the end of
the run (one more than the last step above it; 1 when no step was), the criterion of
``bench/optim_lab.py``'s table, where a rule that touches the tolerance and leaves it
has not converged; not logged when the last step is above it (a sweep ranked by it puts
such a child after every one that settled). A run longer than ``MAX_LOGGED`` steps logs
every k-th step (k the smallest that fits) and the last (``settled_step`` still counts
every step). A non-finite loss fails the job (``Diverged``), its trajectory kept.

Checkpoint ``state["model"]`` keys: ``w``. The capability ``trajectory`` evaluates the
landscape on points of the plotted plane (the first two coordinates, the others at the
landscape's first minimum): the contour behind ``trajectory.png``.
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import Tensor, nn

from models.data import LANDSCAPES, DataInfo, Landscape
from models.data.landscapes import ANY_DIMENSION
from models.family import Capability, Context, Diverged, Family, Params
from models.loop import Budget

MAX_LOGGED = 10_000  # logged steps per run; a longer run logs every k-th step
MAX_DIM = 1_000  # the quadratic's dimension (newton's Hessian has its own cap)

Coordinate = Annotated[float, Field(ge=-1e3, le=1e3)]


class OptimLabParams(Params):
    dim: int | None = Field(
        None,
        ge=1,
        le=MAX_DIM,
        description="quadratic only: the dimension of w (default 2); the other landscapes are 2-D",
    )
    condition_number: float | None = Field(
        None,
        ge=1,
        le=1e8,
        description="quadratic only: κ, the ratio of the Hessian's largest eigenvalue to its "
        "smallest (default 10); ignored by the other landscapes",
    )
    start: list[Coordinate] | None = Field(
        None,
        min_length=1,
        max_length=MAX_DIM,
        description="the start point, one value per coordinate (default: the landscape's)",
    )
    tolerance: float = Field(
        1e-6,
        gt=0,
        le=1e3,
        description="converged_step is logged once f(w) − f* ≤ tolerance (f* the "
        "landscape's known minimum)",
    )


def landscape_for(params: OptimLabParams, info: DataInfo) -> Landscape:
    """The landscape the job minimises: the data's, resized for the quadratic's ``dim`` and
    ``condition_number`` (which the 2-D landscapes ignore, as an optimizer ignores another
    rule's settings); ValueError (the API's 422 on params) for a start of the wrong length."""
    land = Landscape.from_info(info)
    if land.function in ANY_DIMENSION:
        kappa = params.condition_number
        extra = {} if kappa is None else {"condition_number": float(kappa)}
        land = land.resized(params.dim or land.dim, **extra)
    if params.start is not None and len(params.start) != land.dim:
        raise ValueError(
            f"start has {len(params.start)} coordinates; {land.name} takes points of {land.dim}"
        )
    return land


class Point(nn.Module):
    """One point ``w`` (float64) on a landscape; ``forward()`` is the loss there."""

    def __init__(self, landscape: Landscape, start: tuple[float, ...]) -> None:
        super().__init__()
        self.landscape = landscape
        self.w = nn.Parameter(torch.tensor(start, dtype=torch.float64))

    def forward(self) -> Tensor:
        return self.landscape(self.w)


def build(params: OptimLabParams, info: DataInfo) -> Point:
    land = landscape_for(params, info)
    return Point(land, tuple(params.start) if params.start is not None else land.start)


def _state(
    module: Point, opt: torch.optim.Optimizer, step: int, done: int | None, last_above: int
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "model": copy.deepcopy(module.state_dict()),
        "optimizer": copy.deepcopy(opt.state_dict()),
        "step": step,
        "last_above": last_above,
    }
    if done is not None:
        state["converged_step"] = done
    return state


def fit(module: nn.Module, data: Any, params: OptimLabParams, ctx: Context) -> None:
    """``ctx.steps`` optimizer steps from the start (see the module doc for what is logged)."""
    assert isinstance(module, Point)
    module.to(ctx.device)
    opt = ctx.make_optimizer(module.parameters())
    closure = getattr(opt, "needs_closure", False)
    total = Budget.of(ctx).total
    every = max(1, math.ceil(total / MAX_LOGGED))
    offer = max(1, total // 20)
    f_star = module.landscape.minimum
    step, converged = 0, None
    last_above = 0  # the last step with f − f* above the tolerance (0: the start)
    if ctx.resume is not None:
        module.load_state_dict(ctx.resume["model"])
        opt.load_state_dict(ctx.resume["optimizer"])
        step, converged = int(ctx.resume["step"]), ctx.resume.get("converged_step")
        # a checkpoint from before settled_step existed: count its step as above
        last_above = int(ctx.resume.get("last_above", step))
    while step < total:
        if ctx.should_stop():
            ctx.checkpoint(step, _state(module, opt, step, converged, last_above))
            return
        before = module.w.detach().clone()
        loss = module()
        if not bool(torch.isfinite(loss)):
            raise Diverged(step + 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        assert module.w.grad is not None
        grad_norm = float(module.w.grad.norm())
        if closure:
            opt.step(module)  # newton: the loss with its graph, for the Hessian
        else:
            opt.step()
        step += 1
        with torch.no_grad():
            now = float(module())
        if not math.isfinite(now):
            raise Diverged(step)
        within = f_star is not None and now - f_star <= params.tolerance
        if not within:
            last_above = step
        if converged is None and within:
            converged = step
            ctx.log(step, converged_step=step)
        if step == total and f_star is not None and last_above < total:
            ctx.log(step, settled_step=last_above + 1)
        if step % every == 0 or step == total:
            w = module.w.detach()
            ctx.log(
                step,
                loss=now,
                w0=float(w[0]),
                w1=float(w[1]) if len(w) > 1 else 0.0,
                grad_norm=grad_norm,
                step_norm=float((w - before).norm()),
            )
        if step % offer == 0 or step == total:
            ctx.progress(step, total)
            ctx.checkpoint(step, _state(module, opt, step, converged, last_above))


def plane_loss(module: nn.Module, points: Tensor) -> dict[str, Tensor]:
    """The loss at ``points``: (n, dim) whole points as they are, or (n, 2) points of the
    plotted plane, the first two coordinates, the others at the landscape's first minimum
    (the quadratic's origin) -> {"loss": (n,)}."""
    assert isinstance(module, Point)
    land = module.landscape
    w = points.to(torch.float64)
    if w.shape[-1] != land.dim:
        base = torch.tensor(land.minima[0] if land.minima else land.start, dtype=torch.float64)
        w = base.expand(len(points), land.dim).clone()
        w[:, :2] = points.to(torch.float64)
    with torch.no_grad():
        return {"loss": land(w)}


FAMILY = Family(
    name="optim",
    description="optimizer lab: every optimizer (and newton) on analytic loss landscapes",
    params=OptimLabParams,
    datasets=LANDSCAPES,
    capabilities={Capability.TRAJECTORY: plane_loss},
    build=build,
    fit=fit,
    default_epochs=1,  # unused: the lab counts optimizer steps
    default_steps=200,
    default_batch_size=1,
    second_order=True,
)
