"""Pictures of energy-based models, the same routes for every family that declares the
capability: each unit's weights as an image (FILTERS: an RBM's receptive fields) and one
Markov chain over its sweeps (CHAIN: how a Gibbs sampler mixes).

Each route calls the function the ``Family`` record maps its capability to (signatures
in ``models.generative``); no route knows a family by name.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from fastapi import APIRouter, Query

from app.api.common import MAX_CHAIN_SWEEPS, PNG, PNGResponse, check_chains, run_inference
from app.api.deps import LoadedModel
from app.inference import Loaded
from app.limits import MAX_INFERENCE_WORK
from app.problems import Problem, field_problem
from models.family import Capability
from models.generative import SampleOptions

router = APIRouter(prefix="/v1/jobs", tags=["generative"])

MAX_FILTERS = 256  # tiles one filters.png draws (a 16 × 16 grid)
MAX_CHAIN_FRAMES = 32  # snapshots of it


def _image_shape(item: Loaded, what: str) -> tuple[int, ...]:
    """The model's image shape (C, H, W); 409 for a model of other data."""
    shape = item.info.image_shape
    if shape is None:
        raise Problem(409, f"{what} is drawn for images; {item.info.name} holds none")
    return shape


@router.get("/{job_id}/filters.png", response_class=PNGResponse, responses=PNG)
def filters_png(
    model: LoadedModel,
    n: Annotated[int, Query(ge=1, description=f"units to draw, at most {MAX_FILTERS}")] = 64,
    order: Annotated[
        Literal["norm", "index"],
        Query(description="which units: the largest weight norm ‖w‖ first, or the first n"),
    ] = "norm",
) -> PNGResponse:
    """For energy-based models of images: each unit's weights as an image (an RBM's
    hidden unit j: the column W[:, j]; a Boltzmann machine's unit i: its couplings W[i, :],
    0 at itself), a tile per unit labelled with its index, at most ``n`` of them (all the
    units when there are fewer): by default those of the largest norm, the units that do
    most. Each tile on its own symmetric scale ±max |w| (red positive, blue negative,
    white 0), so every unit's pattern shows whatever its size."""
    from app.plots import filters_png as draw

    item = model.load()
    fn = item.family.capability(Capability.FILTERS)  # 409 naming what it can do
    shape = _image_shape(item, "filters")
    if n > MAX_FILTERS:
        raise field_problem(
            "n", f"a filters picture draws at most {MAX_FILTERS} units", kind="less_than_equal"
        )
    w = run_inference(fn, item.module).detach().cpu().double().flatten(1)  # (units, D)
    if order == "norm":
        units = w.norm(dim=1).argsort(descending=True, stable=True)[:n]
        which = "largest ‖w‖ first"
    else:
        units = torch.arange(min(n, len(w)))
        which = "by index"
    tiles = w[units].reshape(len(units), *shape).numpy()
    title = (
        f"{item.family.name} on {item.info.name} · {len(units)} of {len(w)} units' weights, "
        f"{which}\neach tile on its own scale ±max |w| · red +, blue −, white 0"
    )
    return PNGResponse(draw(tiles, units=units.tolist(), title=title))


def frame_steps(steps: int, frames: int, spacing: Literal["geometric", "linear"]) -> list[int]:
    """The sweep counts to show: 0 (the start) and ``steps``, and between them counts
    evenly spaced (linear) or evenly spaced in log from 1 (geometric: a chain moves most in
    its first sweeps). Counts that round to the same sweep are shown once, so a chain of
    few sweeps may show fewer than ``frames``."""
    if spacing == "linear":
        points = np.linspace(0, steps, frames)
    else:
        points = np.concatenate([[0.0], np.geomspace(1, steps, frames - 1)])
    return sorted({round(float(p)) for p in points})


@router.get("/{job_id}/chain.png", response_class=PNGResponse, responses=PNG)
def chain_png(
    model: LoadedModel,
    seed: Annotated[int, Query(ge=0, le=2**63 - 1, description="same seed, same chain")] = 0,
    steps: Annotated[
        int, Query(ge=1, le=MAX_CHAIN_SWEEPS, description="Gibbs sweeps of the chain")
    ] = 50,
    frames: Annotated[
        int, Query(ge=2, le=MAX_CHAIN_FRAMES, description="snapshots, the start and the end too")
    ] = 10,
    spacing: Annotated[
        Literal["geometric", "linear"],
        Query(description="snapshot sweeps evenly spaced in log (from 1) or linearly"),
    ] = "geometric",
) -> PNGResponse:
    """For models that sample by Markov chains: one chain from uniform noise (seeded, as
    ``samples`` starts its chains), its state after 0 sweeps (the start), ``steps`` sweeps
    (the end: ``samples?n=1&seed=…&gibbs_steps=steps`` draws this image) and counts
    between (``spacing``), as a row with the sweep count under each."""
    from app.plots import chain_png as draw

    item = model.load()
    chain = item.family.capability(Capability.CHAIN)  # 409 naming what it can do
    shape = _image_shape(item, "a chain")
    what = f"steps × {chain.rows} Gibbs rows a sweep (one chain)"
    check_chains(item, 1, steps, ["steps"], "steps", what)
    at = frame_steps(steps, frames, spacing)
    max_rows = MAX_INFERENCE_WORK // max(item.parameters, 1)
    opts = SampleOptions(n=1, seed=seed, steps=steps, max_rows=max_rows)
    x = run_inference(chain, item.module, opts, at).detach().cpu().float()
    images = x.reshape(len(at), *shape).numpy()
    title = (
        f"{item.family.name} on {item.info.name} · one Gibbs chain from uniform noise · "
        f"seed {seed} · {steps} sweeps, {spacing} snapshots"
    )
    return PNGResponse(draw(images, steps=at, value_max=item.info.value_max or 1.0, title=title))
