"""Generative inference, the same routes for every family that can do it: samples,
log-likelihoods, the encoder and decoder of latent-variable models, and pictures
(sample grids and scatters, latent interpolations, 2-D density heat maps).

Each route goes through ``models.generative``'s signatures on the ``Family`` record;
no route knows a family by name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import CurrentPrincipal, SessionDep, owned_job
from app.api.evaluation import PNG, PNGResponse, job_dataset
from app.api.inference import loaded_model, parse_inputs, require
from app.auth import Principal
from app.config import get_settings
from app.inference import Loaded, load_model, to_jsonable
from app.limits import INFERENCE_LIMITER, MAX_FORWARD_ROWS
from app.problems import Problem, field_problem
from app.schemas import BINARY, DecodeOut, EncodeOut, LogProbOut, SamplesOut
from models.data.builtin import mode_centres
from models.family import Capability
from models.generative import LogProb, OptionError, SampleOptions, bits_per_dim

router = APIRouter(prefix="/v1/jobs", tags=["generative"])


def _model(
    session: SessionDep, principal: Principal, job_id: str, checkpoint: str | None = None
) -> Loaded:
    INFERENCE_LIMITER.take(principal.key_id)
    item = loaded_model(session, principal, job_id)
    if checkpoint is not None and checkpoint != item.checkpoint_id:
        item = load_model(session, owned_job(session, principal, job_id), checkpoint)
    return item


def _labels(
    item: Loaded, raw: list[int] | None, n: int, field: str = "labels"
) -> torch.Tensor | None:
    if raw is None:
        return None
    if len(raw) != n:
        raise field_problem(field, f"give one label per input ({n}), not {len(raw)}")
    classes = item.info.n_classes
    for i, label in enumerate(raw):
        if classes is None or not 0 <= label < classes:
            raise field_problem(
                f"{field}[{i}]", f"label {label} is not a class of {item.info.name}"
            )
    return torch.tensor(raw, dtype=torch.int64)


def _call(fn: Any, *args: Any, field: str | None = None) -> Any:
    """Run a family function; its ``OptionError`` becomes a 422 naming the option (or
    ``field``: the query parameter a route turned into the family's argument)."""
    try:
        with torch.inference_mode():
            return fn(*args)
    except OptionError as exc:
        raise field_problem(field or exc.field, str(exc)) from None


def _samples(item: Loaded, opts: SampleOptions) -> torch.Tensor:
    require(item, Capability.SAMPLE)
    if opts.label is not None:
        classes = item.info.n_classes
        if classes is None or not 0 <= opts.label < classes:
            raise field_problem("label", f"label {opts.label} is not a class of {item.info.name}")
    assert item.family.sample is not None
    return _call(item.family.sample, item.module, opts).detach().cpu().float()


# --- samples -----------------------------------------------------------------------------


@router.get(
    "/{job_id}/samples",
    response_model=None,
    responses={
        200: {
            "model": SamplesOut,
            "description": "samples as numbers (format=json) or a picture (format=png)",
            "content": {"image/png": {"schema": BINARY}},
        }
    },
)
def samples(
    job_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    n: Annotated[int, Query(ge=1, description="how many samples (DEEPZOO_MAX_SAMPLES)")] = 16,
    seed: Annotated[int, Query(ge=0, le=2**63 - 1, description="same seed, same samples")] = 0,
    label: Annotated[int | None, Query(ge=0, description="class, for conditional models")] = None,
    temperature: Annotated[
        float, Query(gt=0, le=10, description="scale of the latent or base noise")
    ] = 1.0,
    format: Annotated[Literal["json", "png"], Query(description="numbers or a picture")] = "json",
    checkpoint: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Samples from the model: JSON, or a PNG (an image grid; for 2-D data a scatter over
    the training data and the true modes)."""
    limit = get_settings().max_samples
    if n > limit:
        raise field_problem("n", f"at most {limit} samples per request", kind="less_than_equal")
    item = _model(session, principal, job_id, checkpoint)
    opts = SampleOptions(n=n, seed=seed, label=label, temperature=temperature)
    x = _samples(item, opts)
    if format == "png":
        return PNGResponse(_samples_png(item, x, opts, session, principal, job_id))
    return JSONResponse(
        {
            "job_id": job_id,
            "checkpoint": item.checkpoint_id,
            "samples": to_jsonable(x),
            "seed": seed,
            "n": n,
            "label": label,
            "temperature": temperature,
        }
    )


def _samples_png(
    item: Loaded,
    x: torch.Tensor,
    opts: SampleOptions,
    session: SessionDep,
    principal: Principal,
    job_id: str,
) -> bytes:
    from app.plots import image_grid_png, scatter_png

    info = item.info
    what = f"{opts.n} samples · seed {opts.seed}" + (
        f" · label {opts.label}" if opts.label is not None else ""
    )
    title = f"{item.family.name} on {info.name} · {what}"
    if info.image_shape is not None:
        images = x.reshape(len(x), *info.image_shape).numpy()
        return image_grid_png(images, value_max=info.value_max or 1.0, title=title)
    if info.input_shape == (2,):
        data = job_dataset(owned_job(session, principal, job_id)).x_train.numpy()
        return scatter_png(x.numpy(), data=data, modes=mode_centres(info.name), title=title)
    raise Problem(409, f"no picture for {info.name}'s data (neither images nor 2-D points)")


# --- log-likelihood ----------------------------------------------------------------------


class LogProbRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(description="examples in the data's own shape and units")
    labels: list[int] | None = Field(None, description="one class per input (conditional)")
    k: Annotated[int | None, Field(ge=1, description="importance samples for a bound")] = None


@router.post("/{job_id}/log-prob", response_model=None, responses={200: {"model": LogProbOut}})
def log_prob(
    job_id: str, body: LogProbRequest, principal: CurrentPrincipal, session: SessionDep
) -> JSONResponse:
    """log p(x) per input in nats and bits per dimension: ``exact`` for flows, a lower
    bound with ``k`` importance samples for a VAE."""
    item = _model(session, principal, job_id)
    require(item, Capability.LOG_PROB)
    x = parse_inputs(body.inputs, item.info.input_shape)
    k = body.k or item.family.default_log_prob_k
    settings = get_settings()
    if k > settings.max_importance_samples:
        raise field_problem(
            "k", f"at most {settings.max_importance_samples}", kind="less_than_equal"
        )
    if k * len(x) > MAX_FORWARD_ROWS:
        raise field_problem(
            "k", f"k × inputs is over {MAX_FORWARD_ROWS:,}; split the request", 413, "too_long"
        )
    labels = _labels(item, body.labels, len(x))
    assert item.family.log_prob is not None
    out: LogProb = _call(item.family.log_prob, item.module, x, labels, k)
    lp = out.log_prob.detach().cpu().double()
    return JSONResponse(
        {
            "job_id": job_id,
            "checkpoint": item.checkpoint_id,
            "log_prob": to_jsonable(lp),
            "bits_per_dim": to_jsonable(bits_per_dim(lp, item.info)),
            "exact": out.exact,
            "k": out.k,
        }
    )


# --- encoder and decoder -------------------------------------------------------------------


class EncodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Any]
    labels: list[int] | None = None


class DecodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latents: list[Any] = Field(description="latent vectors z, each of the model's latent size")
    labels: list[int] | None = None


@router.post("/{job_id}/encode", response_model=None, responses={200: {"model": EncodeOut}})
def encode(
    job_id: str, body: EncodeRequest, principal: CurrentPrincipal, session: SessionDep
) -> JSONResponse:
    """The approximate posterior q(z|x) of each input: its ``mean`` and ``log_var``."""
    item = _model(session, principal, job_id)
    if item.family.encode is None:
        raise Problem(409, f"model {item.family.name!r} has no encoder")
    x = parse_inputs(body.inputs, item.info.input_shape)
    out = _call(item.family.encode, item.module, x, _labels(item, body.labels, len(x)))
    return JSONResponse({"job_id": job_id, "checkpoint": item.checkpoint_id, **to_jsonable(out)})


@router.post("/{job_id}/decode", response_model=None, responses={200: {"model": DecodeOut}})
def decode(
    job_id: str, body: DecodeRequest, principal: CurrentPrincipal, session: SessionDep
) -> JSONResponse:
    """Latents z -> the decoder's output in the data's units (its mean, or probabilities
    for binary data)."""
    item = _model(session, principal, job_id)
    if item.family.decode is None or item.family.latent_dim is None:
        raise Problem(409, f"model {item.family.name!r} has no decoder")
    dim = item.family.latent_dim(item.family.params(**_spec_params(session, principal, job_id)))
    z = parse_inputs(body.latents, (dim,), field="latents")
    out = _call(item.family.decode, item.module, z, _labels(item, body.labels, len(z)))
    return JSONResponse(
        {"job_id": job_id, "checkpoint": item.checkpoint_id, "outputs": to_jsonable(out)}
    )


def _spec_params(session: SessionDep, principal: Principal, job_id: str) -> dict[str, Any]:
    return dict(owned_job(session, principal, job_id).spec["params"])


# --- pictures ---------------------------------------------------------------------------


@router.get("/{job_id}/interpolate.png", response_class=PNGResponse, responses=PNG)
def interpolate_png(
    job_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    a: Annotated[
        int,
        Query(
            ge=0,
            le=2**63 - 1,
            description="first end: a test-split index (encoder models) or a seed",
        ),
    ] = 0,
    b: Annotated[int, Query(ge=0, le=2**63 - 1, description="second end, likewise")] = 1,
    steps: Annotated[int, Query(ge=2, le=32, description="images along the path")] = 10,
    label: Annotated[int | None, Query(ge=0, description="class, for conditional models")] = None,
) -> PNGResponse:
    """A straight line in latent space, decoded. With an encoder (VAE) the ends are the
    posterior means of test examples ``a`` and ``b`` (a conditional model encodes them
    with their own labels and decodes the path as class ``label``); without (GAN) they
    are the latents drawn from seeds ``a`` and ``b``."""
    from app.plots import image_grid_png

    item = _model(session, principal, job_id)
    fam, info = item.family, item.info
    if fam.decode is None or fam.latent_dim is None:
        raise Problem(409, f"model {fam.name!r} has no decoder to interpolate with")
    if info.image_shape is None:
        raise Problem(409, f"interpolation is drawn for images; {info.name} holds none")
    job = owned_job(session, principal, job_id)
    dim = fam.latent_dim(fam.params(**job.spec["params"]))
    labels = None
    if label is not None:
        if info.n_classes is None or label >= info.n_classes:
            raise field_problem("label", f"label {label} is not a class of {info.name}")
        labels = torch.full((steps,), label, dtype=torch.int64)
    if fam.encode is not None:
        data = job_dataset(job)
        test = data.x_test
        for field, i in (("a", a), ("b", b)):
            if i >= len(test):
                raise field_problem(field, f"the test split has {len(test)} examples")
        own = None  # the ends' true classes, for an encoder q(z|x, y)
        if label is not None and info.n_classes is not None:
            own = data.y_test[[a, b]].long()
        ends = _call(fam.encode, item.module, test[[a, b]], own, field="label")
        za, zb = ends["mean"][0].float(), ends["mean"][1].float()
        how = f"test examples {a} → {b}" + ("" if label is None else f" as label {label}")
    else:
        za = torch.randn(dim, generator=torch.Generator().manual_seed(a))
        zb = torch.randn(dim, generator=torch.Generator().manual_seed(b))
        how = f"seeds {a} → {b}"
    t = torch.linspace(0, 1, steps)[:, None]
    z = (1 - t) * za.cpu() + t * zb.cpu()
    x = _call(fam.decode, item.module, z, labels, field="label").detach().cpu().float()
    images = x.reshape(steps, *info.image_shape).numpy()
    title = f"{fam.name} on {info.name} · {how}"
    return PNGResponse(
        image_grid_png(images, value_max=info.value_max or 1.0, title=title, cols=steps)
    )


@router.get("/{job_id}/density.png", response_class=PNGResponse, responses=PNG)
def density_png(
    job_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    points: Annotated[int, Query(ge=16, le=400, description="grid points per axis")] = 150,
    k: Annotated[
        int | None, Query(ge=1, le=1000, description="importance samples (bounds)")
    ] = None,
) -> PNGResponse:
    """For 2-D data: the learned density as a heat map, the training data on top."""
    from app.plots import density_png as draw

    item = _model(session, principal, job_id)
    require(item, Capability.LOG_PROB)
    if item.info.input_shape != (2,):
        raise Problem(409, f"the density is drawn for 2-D data; {item.info.name} is not")
    job = owned_job(session, principal, job_id)
    data = job_dataset(job).x_train.numpy()
    lo, hi = data.min(0), data.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * 1.15
    xs = np.linspace(centre[0] - half, centre[0] + half, points)
    ys = np.linspace(centre[1] - half, centre[1] + half, points)
    gx, gy = np.meshgrid(xs, ys)
    grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1)).float()
    kk = k or item.family.default_log_prob_k
    assert item.family.log_prob is not None
    results: list[LogProb] = [
        _call(item.family.log_prob, item.module, chunk, None, kk)
        for chunk in grid.split(max(1, 65_536 // kk))
    ]
    log_p = torch.cat([r.log_prob.detach().cpu() for r in results]).double().numpy()
    log_p = log_p.reshape(points, points)
    exact = "exact" if results[0].exact else f"bound, k={kk}"
    title = f"{item.family.name} on {item.info.name} · learned density ({exact})"
    return PNGResponse(draw(xs, ys, log_p, data=data, title=title))
