"""Reinforcement learning routes, the same for every family that declares the capability:
the policy's action for given observations (ACT), evaluation episodes (ROLLOUT) and one
evaluation episode as an animated GIF, so a person sees the pole balance.

Each route calls the function the ``Family`` record maps its capability to (signatures
in ``models.rl``); no route knows a family by name. Episodes run the greedy policy from
fixed evaluation seeds (``models.rl.eval_seed``), never a training episode's.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from app.api.common import parse_inputs, run_inference
from app.api.deps import LoadedModel
from app.inference import Loaded, to_jsonable
from app.limits import check_work, too_costly
from app.problems import Problem
from app.schemas import BINARY, ActOut, ActRequest, RolloutOut, RolloutRequest
from models.data import Environment, load_data
from models.family import Capability
from models.rl import Agent, RolloutOptions, gif_bytes, greedy_policy, record_episode

router = APIRouter(prefix="/v1/jobs", tags=["reinforcement learning"])

# environment steps one rollout request may run: episodes × the environment's time limit
MAX_ROLLOUT_STEPS = 20_000
MAX_GIF_FRAMES = 300  # agent steps one episode.gif shows (10 s at 30 fps)
GIF_WIDTH = 320  # wider renders (classic control's 600 px) are subsampled
GIF: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/gif": {"schema": BINARY}}, "description": "an animated GIF"}
}


class GIFResponse(Response):
    media_type = "image/gif"


def _environment(item: Loaded) -> Environment:
    """The environment the model was trained in; 409 for a model of other data."""
    try:
        data = load_data(item.info.name)
    except KeyError:  # an upload: a table, never an environment
        data = None
    if not isinstance(data, Environment):
        raise Problem(409, f"episodes need an environment; {item.info.name} is none")
    return data


def _episode_steps(item: Loaded, data: Environment, episodes: int, field: str) -> int:
    """Environment steps ``episodes`` episodes may take (the time limit bounds each); 422
    naming ``field`` over ``MAX_ROLLOUT_STEPS`` or the work bound."""
    limit = data.max_episode_steps or MAX_ROLLOUT_STEPS
    steps = episodes * limit
    if steps > MAX_ROLLOUT_STEPS:
        raise too_costly(
            [field],
            f"{episodes} episodes of up to {limit:,} steps = {steps:,} environment steps; "
            f"one request may run at most {MAX_ROLLOUT_STEPS:,}: ask for fewer",
        )
    check_work(item.parameters, steps, [field], "episodes × max_episode_steps")
    return steps


@router.post("/{job_id}/act", response_model=None, responses={200: {"model": ActOut}})
def act(body: ActRequest, model: LoadedModel) -> JSONResponse:
    """The policy's deterministic action for each observation (greedy for a value method,
    the most probable or mean action for a policy), with ``q_values`` (dqn) or ``probs``
    (reinforce) beside them. An observation of the wrong shape is a 422 naming it."""
    item = model.load()
    fn = item.family.capability(Capability.ACT)  # 409 naming what it can do, before parsing
    x = parse_inputs(body.observations, tuple(item.info.input_shape), field="observations")
    check_work(item.parameters, len(x), ["observations"], "observations")
    out = run_inference(fn, item.module, x)
    return JSONResponse(
        {"job_id": item.job_id, "checkpoint": item.checkpoint_id, **to_jsonable(out)}
    )


@router.post("/{job_id}/rollout", response_model=None, responses={200: {"model": RolloutOut}})
def rollout(body: RolloutRequest, model: LoadedModel) -> JSONResponse:
    """Returns and lengths (environment steps) of ``episodes`` evaluation episodes of the
    greedy policy, seeded from ``seed``: the same request, the same numbers. Bounded:
    episodes × the environment's time limit ≤ 20,000 steps (422 naming ``episodes``)."""
    item = model.load()
    fn = item.family.capability(Capability.ROLLOUT)
    data = _environment(item)
    _episode_steps(item, data, body.episodes, "episodes")
    out = run_inference(fn, item.module, data, RolloutOptions(body.episodes, body.seed))
    return JSONResponse(
        {
            "job_id": item.job_id,
            "checkpoint": item.checkpoint_id,
            "seed": body.seed,
            "returns": [float(r) for r in out["returns"]],
            "lengths": [int(n) for n in out["lengths"]],
        }
    )


@router.get("/{job_id}/episode.gif", response_class=GIFResponse, responses=GIF)
def episode_gif(
    model: LoadedModel,
    seed: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="the evaluation episode: same seed, same film")
    ] = 0,
    fps: Annotated[int, Query(ge=1, le=60, description="frames per second")] = 30,
) -> GIFResponse:
    """One evaluation episode of the greedy policy as an animated GIF: gymnasium's
    ``rgb_array`` render (MinAtar frames drawn from the observation), one frame per agent
    step, at most 300 of them."""
    item = model.load()
    fn = item.family.capability(Capability.ACT)
    data = _environment(item)
    _episode_steps(item, data, 1, "seed")
    skip = item.module.frame_skip if isinstance(item.module, Agent) else 1
    with torch.inference_mode():
        frames = record_episode(
            greedy_policy(fn, item.module), data, seed=seed, frame_skip=skip,
            max_frames=MAX_GIF_FRAMES,
        )  # fmt: skip
    return GIFResponse(gif_bytes(frames, fps, max_width=GIF_WIDTH))
