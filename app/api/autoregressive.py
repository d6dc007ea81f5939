"""Pictures of autoregressive models, the same routes for every family that declares the
capability: which pixels one pixel's conditional sees (RECEPTIVE_FIELD: the blind spot
of a PixelCNN a person can see) and test images completed from their top half
(COMPLETE).

Each route calls the function the ``Family`` record maps its capability to (signatures
in ``models.generative``); no route knows a family by name.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.common import PNG, PNGResponse, run_inference
from app.api.deps import LoadedModel
from app.inference import Loaded
from app.limits import MAX_INFERENCE_WORK, RowCost, check_work, chunk_size
from app.problems import Problem, field_problem
from app.schemas import ReceptiveFieldOut
from models.family import Capability
from models.generative import FIELD_ROWS, OptionError, SampleOptions

router = APIRouter(prefix="/v1/jobs", tags=["generative"])
log = logging.getLogger("deepzoo.autoregressive")

MAX_COMPLETED_IMAGES = 16  # test images one completions.png completes (rows of the grid)
MAX_COMPLETIONS = 8  # completions of each (columns after the original and its top half)


def _image_shape(item: Loaded, what: str) -> tuple[int, int, int]:
    """(C, H, W) of the model's images; 409 for a model of other data."""
    shape = item.info.image_shape
    if shape is None or len(shape) != 3:
        raise Problem(409, f"{what} is drawn for images; {item.info.name} holds none")
    c, h, w = shape
    return c, h, w


# --- receptive field -----------------------------------------------------------------------


def _field(item: Loaded, row: int, col: int) -> tuple[torch.Tensor, int, int]:
    """The influence map (H, W) on pixel (row, col) (channels summed), 422 naming ``row``
    or ``col`` outside the image; with the image's height and width."""
    fn = item.family.capability(Capability.RECEPTIVE_FIELD)  # 409 naming what it can do
    c, h, w = _image_shape(item, "a receptive field")
    if row >= h:
        raise field_problem("row", f"{item.info.name} images have rows 0..{h - 1}")
    if col >= w:
        raise field_problem("col", f"{item.info.name} images have columns 0..{w - 1}")
    passes = item.family.log_prob_passes
    rows = FIELD_ROWS * (1 if passes is None else max(1, passes(item.module)))
    work = item.parameters * rows
    if work > MAX_INFERENCE_WORK:  # no option shrinks it: the model is too large for this
        raise Problem(
            409,
            f"{item.family.name}'s receptive field runs {rows:,} forward rows through "
            f"{item.parameters:,} parameters ({work:.2g} multiply-adds); one request may "
            f"compute at most {MAX_INFERENCE_WORK:.2g}",
        )
    # the conditional of pixel (row, col), in the first channel for colour images
    out = run_inference(fn, item.module, row * w + col, field="row")
    field = out.detach().cpu().double().reshape(c, h, w).sum(0)
    return field, h, w


Row = Annotated[int, Query(ge=0, le=4096, description="the pixel's row (0: top)")]
Col = Annotated[int, Query(ge=0, le=4096, description="the pixel's column (0: left)")]


@router.get("/{job_id}/receptive-field.png", response_class=PNGResponse, responses=PNG)
def receptive_field_png(model: LoadedModel, row: Row = 0, col: Col = 0) -> PNGResponse:
    """For image models with a receptive field (autoregressive ones): a heat map of how
    much each input pixel influences the conditional of pixel (``row``, ``col``), by
    gradient magnitudes; pixels that cannot influence it (zero: the masks, the order,
    a PixelCNN's blind spot) are hatched grey, the pixel itself outlined."""
    from app.plots import receptive_field_png as draw

    item = model.load()
    field, h, w = _field(item, row, col)
    seen = int((field > 0).sum())
    title = (
        f"{item.family.name} on {item.info.name} · receptive field of pixel ({row}, {col})"
        f" · {seen} of {h * w} pixels"
    )
    return PNGResponse(draw(field.numpy(), row=row, col=col, title=title))


@router.get(
    "/{job_id}/receptive-field", response_model=None, responses={200: {"model": ReceptiveFieldOut}}
)
def receptive_field(model: LoadedModel, row: Row = 0, col: Col = 0) -> JSONResponse:
    """The numbers behind receptive-field.png: ``field`` (H × W, channels summed) of
    gradient magnitudes, 0 exactly where a pixel cannot influence pixel (``row``,
    ``col``); ``influences``: how many pixels can."""
    item = model.load()
    field, _, _ = _field(item, row, col)
    return JSONResponse(
        {
            "job_id": item.job_id,
            "checkpoint": item.checkpoint_id,
            "row": row,
            "col": col,
            "field": field.tolist(),
            "influences": int((field > 0).sum()),
        }
    )


# --- completions ----------------------------------------------------------------------------


def _per_call(item: Loaded, key: str, call: Any) -> int | None:
    """Rows one completion call may take under DEEPZOO_INFERENCE_MEMORY_MB (measured once
    on 1 and 2 rows), or None when the family refuses the probe (the work bound holds)."""
    cost = item.costs.get(key)
    if cost is None:
        try:
            cost = RowCost.measure(call)
        except Exception as exc:
            log.warning("no memory estimate for %s of job %s: %s", key, item.job_id, exc)
            return None
        item.costs[key] = cost
    return chunk_size(cost, 1, ["samples", "n"], "completion")


@router.get("/{job_id}/completions.png", response_class=PNGResponse, responses=PNG)
def completions_png(
    model: LoadedModel,
    n: Annotated[
        int, Query(ge=1, le=MAX_COMPLETED_IMAGES, description="test images to complete")
    ] = 8,
    samples: Annotated[int, Query(ge=1, le=MAX_COMPLETIONS, description="completions of each")] = 4,
    seed: Annotated[int, Query(ge=0, le=2**63 - 1, description="same seed, same picture")] = 0,
    temperature: Annotated[
        float, Query(gt=0, le=10, description="scale of the conditionals' noise")
    ] = 1.0,
    label: Annotated[int | None, Query(ge=0, description="class, for conditional models")] = None,
) -> PNGResponse:
    """For image models that complete (autoregressive ones): the first ``n`` images of the
    dataset's fixed test split, their top half kept and the bottom half drawn ``samples``
    ways from the model's conditionals. A row per image: the original, its top half
    (the rest grey), then the completions."""
    from app.plots import completions_png as draw

    item = model.load()
    fn = item.family.capability(Capability.COMPLETE)  # 409 naming what it can do
    c, h, w = _image_shape(item, "a completion")
    info = item.info
    if label is not None and (info.n_classes is None or label >= info.n_classes):
        raise field_problem("label", f"label {label} is not a class of {info.name}")
    test = model.dataset().x_test
    if n > len(test):
        raise field_problem("n", f"the test split has {len(test)} images")
    rows = n * samples
    # work: at most one forward per drawn pixel over the rows (a family may do better
    # and says so against max_rows)
    check_work(item.parameters, rows, ["samples", "n"], "n × samples")
    max_rows = MAX_INFERENCE_WORK // max(item.parameters, 1)
    top = (torch.arange(h) < h // 2)[None, :, None].expand(c, h, w)
    observed = top.reshape(info.input_shape)
    shape = info.input_shape

    def probe(k: int) -> Any:
        return fn(
            item.module, torch.zeros(k, *shape), observed, SampleOptions(k, max_rows=max_rows)
        )

    fits = _per_call(item, "complete", probe)
    if fits is not None and rows > fits:
        raise field_problem(
            "samples",
            f"{n} × {samples} completions would allocate more than the inference memory "
            f"budget (DEEPZOO_INFERENCE_MEMORY_MB); at most {fits} at once",
            kind="too_costly",
        )
    x = test[:n].float().repeat_interleave(samples, 0)  # (n × samples, *shape), image-major
    opts = SampleOptions(rows, seed, label, temperature, max_rows=max_rows)
    try:
        with torch.inference_mode():
            out = fn(item.module, x, observed, opts)
    except OptionError as exc:  # its n (the rows it completes) is our n × samples
        raise field_problem("samples" if exc.field == "n" else exc.field, str(exc)) from None
    done = out.detach().cpu().float().reshape(n, samples, c, h, w).numpy()
    originals = test[:n].float().reshape(n, c, h, w).numpy()
    what = f"top {h // 2} of {h} rows kept · seed {seed}" + (
        f" · label {label}" if label is not None else ""
    )
    title = f"{item.family.name} on {info.name} · completions · {what}"
    return PNGResponse(
        draw(originals, done, keep_rows=h // 2, value_max=info.value_max or 1.0, title=title)
    )
