"""Generative inference, the same routes for every family that can do it: samples,
log-likelihoods, the encoder and decoder of latent-variable models, and pictures
(sample grids and scatters, latent interpolations, 2-D density heat maps).

Each route calls the functions the ``Family`` record maps its capabilities to
(signatures in ``models.generative``); no route knows a family by name.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from app.api.common import (
    MAX_CHAIN_SWEEPS,
    PNG,
    PNGResponse,
    check_chains,
    parse_inputs,
    run_inference,
)
from app.api.deps import JobModel, LoadedModel
from app.config import get_settings
from app.inference import Loaded, to_jsonable
from app.limits import MAX_INFERENCE_WORK, MAX_PNG_SAMPLES, RowCost, check_work, chunk_size
from app.problems import Problem, field_problem
from app.schemas import (
    BINARY,
    DecodeOut,
    DecodeRequest,
    EncodeOut,
    EncodeRequest,
    LogProbOut,
    LogProbRequest,
    SamplesOut,
)
from models.data.builtin import mode_centres
from models.family import Capability
from models.generative import LogProb, SampleOptions, bits_per_dim

router = APIRouter(prefix="/v1/jobs", tags=["generative"])
log = logging.getLogger("deepzoo.generative")


def _cost(item: Loaded, key: str, call: Callable[[int], Any]) -> RowCost | None:
    """The memory per row of one of the model's calls, measured once on 1 and 2 rows; None
    when the family refuses the probe (the work bound still holds then)."""
    cost = item.costs.get(key)
    if cost is None:
        try:
            cost = RowCost.measure(call)
        except Exception as exc:  # e.g. a DRS sampler whose D rejects everything
            log.warning("no memory estimate for %s of job %s: %s", key, item.job_id, exc)
            return None
        item.costs[key] = cost
    return cost


def _per_call(
    item: Loaded,
    key: str,
    call: Callable[[int], Any],
    rows_per_unit: int,
    fields: Sequence[str],
    what: str,
) -> int:
    """Units per call that stay under DEEPZOO_INFERENCE_MEMORY_MB (422 when one does not)."""
    cost = _cost(item, key, call)
    return 1 << 40 if cost is None else chunk_size(cost, rows_per_unit, fields, what)


def _probe_labels(item: Loaded, given: bool) -> Callable[[int], torch.Tensor | None]:
    return lambda n: torch.zeros(n, dtype=torch.int64) if given else None


def _fields(first: str, second: str, explicit_first: bool) -> list[str]:
    return [first, second] if explicit_first else [second, first]


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


def _samples(item: Loaded, opts: SampleOptions) -> torch.Tensor:
    """n samples, their work bounded before any runs (parameters × n, × the sweeps of a
    chain sampler; a proposal sampler stops at the same bound) and their memory under the
    budget (422 on ``n``, or ``gibbs_steps`` when the request set it, beyond either)."""
    sample = item.family.capability(Capability.SAMPLE)
    if opts.label is not None:
        classes = item.info.n_classes
        if classes is None or not 0 <= opts.label < classes:
            raise field_problem("label", f"label {opts.label} is not a class of {item.info.name}")
    if Capability.CHAIN not in item.family.capabilities:
        if opts.steps is not None:
            raise field_problem(
                "gibbs_steps",
                f"{item.family.name} does not sample by Markov chains: leave gibbs_steps out",
            )
        check_work(item.parameters, opts.n, ["n"], "n samples")
        probe_steps = None
    else:
        chain = item.family.capability(Capability.CHAIN)
        sweeps = chain.sweeps(item.module) if opts.steps is None else opts.steps
        fields = ["n"] if opts.steps is None else ["gibbs_steps", "n"]
        what = f"n × gibbs_steps ({sweeps}) × {chain.rows} Gibbs rows a sweep"
        check_chains(item, opts.n, sweeps, fields, "gibbs_steps", what)
        # a chain's memory does not grow with its sweeps: the probe runs one (none for a
        # model that draws exactly)
        probe_steps = 1 if sweeps else None
    max_rows = MAX_INFERENCE_WORK // max(item.parameters, 1)

    def call(n: int) -> Any:
        return sample(item.module, SampleOptions(n=n, max_rows=max_rows, steps=probe_steps))

    key = "sample" if probe_steps is None else "sample:chain"
    fits = _per_call(item, key, call, 1, ["n"], "sample")
    if opts.n > fits:
        raise field_problem(
            "n",
            f"{opts.n} samples would allocate more than the inference memory budget "
            f"(DEEPZOO_INFERENCE_MEMORY_MB); at most {fits} at once",
            kind="too_costly",
        )
    opts = dataclasses.replace(opts, max_rows=max_rows)
    return run_inference(sample, item.module, opts).detach().cpu().float()


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
    model: LoadedModel,
    n: Annotated[int, Query(ge=1, description="how many samples (DEEPZOO_MAX_SAMPLES)")] = 16,
    seed: Annotated[int, Query(ge=0, le=2**63 - 1, description="same seed, same samples")] = 0,
    label: Annotated[int | None, Query(ge=0, description="class, for conditional models")] = None,
    temperature: Annotated[
        float, Query(gt=0, le=10, description="scale of the latent or base noise")
    ] = 1.0,
    format: Annotated[Literal["json", "png"], Query(description="numbers or a picture")] = "json",
    checkpoint: Annotated[str | None, Query(max_length=64)] = None,
    gibbs_steps: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_CHAIN_SWEEPS,
            description="sweeps of each Markov chain, for models that sample by chains "
            "(the catalog's capability chain); default: the model's gibbs_steps",
        ),
    ] = None,
) -> Response:
    """Samples from the model: JSON, or a PNG (an image grid; for 2-D data a scatter over
    the training data and the true modes). Models that sample by Markov chains (RBM,
    Boltzmann machine) run ``gibbs_steps`` sweeps of each."""
    limit = get_settings().max_samples
    if n > limit:
        raise field_problem("n", f"at most {limit} samples per request", kind="less_than_equal")
    item = model.load(checkpoint)
    if format == "png" and item.info.image_shape is not None and n > MAX_PNG_SAMPLES:
        raise field_problem(
            "n", f"a PNG grid draws at most {MAX_PNG_SAMPLES} images", kind="less_than_equal"
        )
    opts = SampleOptions(n=n, seed=seed, label=label, temperature=temperature, steps=gibbs_steps)
    x = _samples(item, opts)
    if format == "png":
        return PNGResponse(_samples_png(item, x, opts, model))
    return JSONResponse(
        {
            "job_id": item.job_id,
            "checkpoint": item.checkpoint_id,
            "samples": to_jsonable(x),
            "seed": seed,
            "n": n,
            "label": label,
            "temperature": temperature,
            "gibbs_steps": gibbs_steps,
        }
    )


def _samples_png(item: Loaded, x: torch.Tensor, opts: SampleOptions, model: JobModel) -> bytes:
    from app.plots import image_grid_png, scatter_png

    info = item.info
    what = f"{opts.n} samples · seed {opts.seed}" + (
        f" · label {opts.label}" if opts.label is not None else ""
    )
    if opts.steps is not None:
        what += f" · {opts.steps} Gibbs sweeps"
    title = f"{item.family.name} on {info.name} · {what}"
    if info.image_shape is not None:
        images = x.reshape(len(x), *info.image_shape).numpy()
        return image_grid_png(images, value_max=info.value_max or 1.0, title=title)
    if info.input_shape == (2,):
        data = model.dataset().x_train.numpy()
        return scatter_png(x.numpy(), data=data, modes=mode_centres(info.name), title=title)
    raise Problem(409, f"no picture for {info.name}'s data (neither images nor 2-D points)")


# --- log-likelihood ----------------------------------------------------------------------


@router.post("/{job_id}/log-prob", response_model=None, responses={200: {"model": LogProbOut}})
def log_prob(body: LogProbRequest, model: LoadedModel) -> JSONResponse:
    """log p(x) per input in nats and bits per dimension: ``exact`` for flows, a lower
    bound with ``k`` importance samples for a VAE."""
    item = model.load()
    item.family.capability(Capability.LOG_PROB)  # 409 naming what it can do, before parsing
    x = parse_inputs(body.inputs, item.info.input_shape)
    k = body.k or item.family.default_log_prob_k
    settings = get_settings()
    if k > settings.max_importance_samples:
        raise field_problem(
            "k", f"at most {settings.max_importance_samples}", kind="less_than_equal"
        )
    labels = _labels(item, body.labels, len(x))
    out = _log_prob_bounded(item, x, labels, k, _fields("k", "inputs", body.k is not None))
    lp = out.log_prob.detach().cpu().double()
    return JSONResponse(
        {
            "job_id": item.job_id,
            "checkpoint": item.checkpoint_id,
            "log_prob": to_jsonable(lp),
            "bits_per_dim": to_jsonable(bits_per_dim(lp, item.info)),
            "exact": out.exact,
            "kind": out.kind,
            "k": out.k,
            "stderr": out.stderr,
        }
    )


def _log_prob_bounded(
    item: Loaded,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    k: int,
    fields: list[str],
    what: str = "inputs × k",
) -> LogProb:
    """log p of ``x`` with ``k`` importance samples: work (parameters × inputs × k × the
    family's passes per input, e.g. a MADE's inference masks) bounded, inputs chunked
    under the memory budget (each chunk reseeds the family's fixed noise)."""
    fn = item.family.capability(Capability.LOG_PROB)
    passes = item.family.log_prob_passes
    per_input = 1 if passes is None else max(1, passes(item.module))
    if per_input > 1:
        what = f"{what} × {per_input} passes per input"
    check_work(item.parameters, len(x) * k * per_input, fields, what)
    shape, probe_labels = item.info.input_shape, _probe_labels(item, labels is not None)
    per_call = _per_call(
        item,
        f"log_prob:{labels is not None}",
        lambda n: fn(item.module, torch.zeros(n, *shape), probe_labels(n), 1),
        k,
        ["k"],
        f"{k} importance samples",
    )
    parts: list[LogProb] = [
        run_inference(
            fn, item.module, chunk, None if labels is None else labels[i : i + per_call], k
        )
        for i, chunk in zip(range(0, len(x), per_call), x.split(per_call), strict=True)
    ]
    lp = torch.cat([p.log_prob.detach().cpu() for p in parts])
    return LogProb(lp, exact=parts[0].exact, k=parts[0].k, stderr=parts[0].stderr)


def _chunked_call(
    item: Loaded,
    key: str,
    fn: Callable[..., Any],
    x: torch.Tensor,
    labels: torch.Tensor | None,
    field: str,
    label_field: str | None = None,
    rows: int = 1,
) -> Any:
    """An encoder or decoder over ``x`` (N rows): work bounded by parameters × N × ``rows``
    (the forward rows of one: a pixel decoder's pass per pixel), chunked under the memory
    budget; tensors, or dicts of tensors, concatenated."""
    what = field if rows == 1 else f"{field} × {rows:,} forward rows each"
    check_work(item.parameters, len(x) * rows, [field], what)
    probe_labels = _probe_labels(item, labels is not None)
    width = tuple(x.shape[1:])
    per_call = _per_call(
        item,
        f"{key}:{labels is not None}",
        lambda n: fn(item.module, torch.zeros(n, *width), probe_labels(n)),
        1,
        [field],
        key,
    )
    parts = [
        run_inference(
            fn,
            item.module,
            chunk,
            None if labels is None else labels[i : i + per_call],
            field=label_field,
        )
        for i, chunk in zip(range(0, len(x), per_call), x.split(per_call), strict=True)
    ]
    if isinstance(parts[0], dict):
        return {key: torch.cat([p[key].detach().cpu() for p in parts]) for key in parts[0]}
    return torch.cat([p.detach().cpu() for p in parts])


# --- encoder and decoder -------------------------------------------------------------------


@router.post("/{job_id}/encode", response_model=None, responses={200: {"model": EncodeOut}})
def encode(body: EncodeRequest, model: LoadedModel) -> JSONResponse:
    """The approximate posterior q(z|x) of each input: its ``mean`` and ``log_var``."""
    item = model.load()
    encoder = item.family.capability(Capability.ENCODE)
    x = parse_inputs(body.inputs, item.info.input_shape)
    labels = _labels(item, body.labels, len(x))
    out = _chunked_call(item, "encode", encoder, x, labels, "inputs")
    return JSONResponse(
        {"job_id": item.job_id, "checkpoint": item.checkpoint_id, **to_jsonable(out)}
    )


@router.post("/{job_id}/decode", response_model=None, responses={200: {"model": DecodeOut}})
def decode(body: DecodeRequest, model: LoadedModel) -> JSONResponse:
    """Latents z -> the decoder's output in the data's units (its mean, or probabilities
    for binary data)."""
    item = model.load()
    decoder = item.family.capability(Capability.DECODE)
    z = parse_inputs(body.latents, (decoder.latent_dim(item.params),), field="latents")
    labels = _labels(item, body.labels, len(z))
    # the family's label errors name the field this route reads: ``labels``
    rows = 1 if decoder.rows is None else max(1, decoder.rows(item.module))
    out = _chunked_call(item, "decode", decoder, z, labels, "latents", "labels", rows)
    return JSONResponse(
        {"job_id": item.job_id, "checkpoint": item.checkpoint_id, "outputs": to_jsonable(out)}
    )


# --- pictures ---------------------------------------------------------------------------


@router.get("/{job_id}/interpolate.png", response_class=PNGResponse, responses=PNG)
def interpolate_png(
    model: LoadedModel,
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

    item = model.load()
    fam, info = item.family, item.info
    path = fam.capability(Capability.INTERPOLATE)
    decoder = fam.capability(Capability.DECODE)  # a family declares interpolate with it
    if info.image_shape is None:
        raise Problem(409, f"interpolation is drawn for images; {info.name} holds none")
    dim = decoder.latent_dim(item.params)
    labels = None
    if label is not None:
        if info.n_classes is None or label >= info.n_classes:
            raise field_problem("label", f"label {label} is not a class of {info.name}")
        labels = torch.full((steps,), label, dtype=torch.int64)
    if Capability.ENCODE in fam.capabilities:
        encoder = fam.capability(Capability.ENCODE)
        data = model.dataset()
        test = data.x_test
        for field, i in (("a", a), ("b", b)):
            if i >= len(test):
                raise field_problem(field, f"the test split has {len(test)} examples")
        own = None  # the ends' true classes, for an encoder q(z|x, y)
        if label is not None and info.n_classes is not None:
            own = data.y_test[[a, b]].long()
        ends = run_inference(encoder, item.module, test[[a, b]], own, field="label")
        za, zb = ends["mean"][0].float(), ends["mean"][1].float()
        how = f"test examples {a} → {b}" + ("" if label is None else f" as label {label}")
    else:
        za = torch.randn(dim, generator=torch.Generator().manual_seed(a))
        zb = torch.randn(dim, generator=torch.Generator().manual_seed(b))
        how = f"seeds {a} → {b}"
    z = path(za, zb, steps)  # (steps, dim)
    rows = 1 if decoder.rows is None else max(1, decoder.rows(item.module))
    x = _chunked_call(item, "decode", decoder, z, labels, "steps", "label", rows).float()
    images = x.reshape(steps, *info.image_shape).numpy()
    title = f"{fam.name} on {info.name} · {how}"
    return PNGResponse(
        image_grid_png(images, value_max=info.value_max or 1.0, title=title, cols=steps)
    )


@router.get("/{job_id}/density.png", response_class=PNGResponse, responses=PNG)
def density_png(
    model: LoadedModel,
    points: Annotated[int, Query(ge=16, le=400, description="grid points per axis")] = 150,
    k: Annotated[
        int | None, Query(ge=1, le=1000, description="importance samples (bounds)")
    ] = None,
) -> PNGResponse:
    """For 2-D data: the learned density as a heat map, the training data on top."""
    from app.plots import density_png as draw

    item = model.load()
    item.family.capability(Capability.LOG_PROB)  # 409 naming what it can do
    if item.info.input_shape != (2,):
        raise Problem(409, f"the density is drawn for 2-D data; {item.info.name} is not")
    data = model.dataset().x_train.numpy()
    lo, hi = data.min(0), data.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * 1.15
    xs = np.linspace(centre[0] - half, centre[0] + half, points)
    ys = np.linspace(centre[1] - half, centre[1] + half, points)
    gx, gy = np.meshgrid(xs, ys)
    grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1)).float()
    importance = k or item.family.default_log_prob_k
    fields = _fields("k", "points", k is not None)
    result = _log_prob_bounded(item, grid, None, importance, fields, "points² × k")
    log_p = result.log_prob.double().numpy()
    log_p = log_p.reshape(points, points)
    exact = "exact" if result.exact else f"bound, k={importance}"
    title = f"{item.family.name} on {item.info.name} · learned density ({exact})"
    return PNGResponse(draw(xs, ys, log_p, data=data, title=title))
