"""What the inference routers share (no routes here): input parsing, the predict machinery
with its bounds, the call of a family function, and the PNG response.

Routers import this module and ``app.api.deps``, never each other
(``tests/test_layout.py`` keeps it so).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from fastapi.responses import Response

from app.config import get_settings
from app.inference import Loaded
from app.limits import MAX_INFERENCE_WORK, RowCost, check_work, chunk_size, too_costly
from app.problems import Problem, field_problem
from app.schemas import BINARY
from models import calibration as cal
from models.family import Capability
from models.generative import NotAnswerable, OptionError
from models.uncertainty import seeded_inference

log = logging.getLogger("deepzoo.inference")
FALLBACK_BYTES_PER_ROW = 64 * 1024  # a model whose memory could not be measured
# sequential updates (an RBM's layer update, a Boltzmann machine's 32-unit block) that one
# request's Markov chains may make: each is a few small ops whatever the chains, so this
# bounds the requests of few chains that the work bound lets run long. At the most: 25,000
# sweeps of one chain of a 500-hidden RBM, 2.2 s on digits_bin (64 pixels), 5.9 s on
# mnist5k_bin (784); 2,000 sweeps of a Boltzmann machine on 784 units (25 blocks of 32),
# 2-4 s (one thread)
MAX_CHAIN_UPDATES = 50_000
MAX_CHAIN_SWEEPS = 100_000  # a request's sweeps per chain (the work bounds apply below it)
PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {"schema": BINARY}}, "description": "a PNG image"}
}
T = TypeVar("T")


class PNGResponse(Response):
    media_type = "image/png"


def run_inference(fn: Callable[..., T], *args: Any, field: str | None = None) -> T:
    """``fn(*args)`` (a family's function) in inference mode; its ``OptionError`` becomes a
    422 naming the option (or ``field``: the query parameter a route turned into the
    family's argument), its ``NotAnswerable`` a 409."""
    try:
        with torch.inference_mode():
            return fn(*args)
    except OptionError as exc:
        raise field_problem(field or exc.field, str(exc)) from None
    except NotAnswerable as exc:
        raise Problem(409, str(exc)) from None


def check_chains(
    item: Loaded, chains: int, sweeps: int, fields: list[str], sweeps_field: str, what: str
) -> None:
    """422 when ``chains`` Markov chains of ``sweeps`` sweeps each (a model declaring CHAIN)
    are over the work bound (parameters × chains × sweeps × the chain's rows per sweep,
    ``what``; naming ``fields``) or over ``MAX_CHAIN_UPDATES`` sequential updates (naming
    ``sweeps_field``, the one that sets them); 0 sweeps: the model's exact draws, one row
    a chain."""
    chain = item.family.capability(Capability.CHAIN)
    rows = chains * (sweeps * chain.rows or 1)
    check_work(item.parameters, rows, fields, what)
    per_sweep = chain.updates(item.module)
    if sweeps * per_sweep > MAX_CHAIN_UPDATES:
        most = MAX_CHAIN_UPDATES // per_sweep
        raise too_costly(
            [sweeps_field],
            f"{sweeps:,} sweeps × {per_sweep:,} sequential updates each = "
            f"{sweeps * per_sweep:,}; one request's chains may make at most "
            f"{MAX_CHAIN_UPDATES:,}: at most {most:,} sweeps",
        )


def _numbers_only(item: Any) -> bool:
    """Whether ``item`` is a number or nested lists of numbers: JSON numbers only, no
    booleans, strings or nulls (which ``np.asarray`` would coerce)."""
    stack = [item]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
    return True


def parse_inputs(raw: list[Any], shape: tuple[int, ...], field: str = "inputs") -> torch.Tensor:
    """A (N, *shape) float32 tensor, or a 422 naming the offending input."""
    settings = get_settings()

    if not raw:
        raise field_problem(field, "give at least one input")
    if len(raw) > settings.max_inputs:
        raise Problem(
            413,
            f"{field}: at most {settings.max_inputs} inputs per request",
            errors=[{"path": field, "message": "too many inputs", "type": "too_long"}],
        )
    flat = shape == (1,)
    x = np.empty((len(raw), *shape), dtype=np.float64)
    for i, item in enumerate(raw):
        if flat and isinstance(item, (int, float)) and not isinstance(item, bool):
            x[i] = float(item) if abs(item) < 1e300 else math.inf  # refused below
            continue
        if not _numbers_only(item):
            raise field_problem(f"{field}[{i}]", "not a number or an array of numbers")
        try:
            arr = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise field_problem(f"{field}[{i}]", "not a number or an array of numbers") from None
        if arr.shape != shape:
            raise field_problem(f"{field}[{i}]", f"shape {list(arr.shape)}, expected {list(shape)}")
        x[i] = arr
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    bad_rows = np.where(~np.isfinite(x32.reshape(len(raw), -1)).all(axis=1))[0]
    if len(bad_rows):
        raise field_problem(f"{field}[{int(bad_rows[0])}]", "NaN, inf or a value beyond float32")
    return torch.from_numpy(x32)


def mc_samples_for(item: Loaded, requested: int | None, field: str) -> tuple[int, int, int]:
    """(T asked, T run, forward rows per input): T asked is ``requested`` or the family's
    default (422 over DEEPZOO_MAX_MC_SAMPLES); T run is what responses echo (an
    ensemble's members, 1 for a deterministic model); MC dropout forwards T rows per input,
    every other family one (an ensemble's members are in its parameters)."""
    settings = get_settings()
    mc = requested or item.family.default_mc_samples
    if mc > settings.max_mc_samples:
        raise Problem(
            422,
            f"{field}: at most {settings.max_mc_samples}",
            errors=[{"path": field, "message": "too large", "type": "less_than_equal"}],
        )
    if item.family.mc_passes is None:
        return mc, mc, mc
    return mc, item.family.mc_passes(item.module, mc), 1


def bounded_predict(
    item: Loaded,
    x: torch.Tensor,
    requested_mc: int | None,
    seed: int,
    *,
    mc_field: str = "mc_samples",
    input_field: str = "inputs",
) -> tuple[dict[str, torch.Tensor], int]:
    """The family's predict on ``x`` with its work bounded (parameters × forward rows) and
    its memory chunked under DEEPZOO_INFERENCE_MEMORY_MB (422 naming the field beyond);
    stochastic passes drawn from ``seed``. Returns the outputs and the T to echo; 409
    for a model that does not predict."""
    predict_fn = item.family.capability(Capability.PREDICT)
    mc, echo, rows = mc_samples_for(item, requested_mc, mc_field)
    if rows == 1:
        fields = [input_field]
    elif item.parameters * rows > MAX_INFERENCE_WORK or requested_mc is not None:
        fields = [mc_field, input_field]
    else:
        fields = [input_field, mc_field]
    what = f"{input_field} × {mc_field}" if rows > 1 else input_field
    steps = 1 if item.family.predict_rows is None else item.family.predict_rows(item.module)
    if steps > 1:  # a recurrent model: each input is ``steps`` forward rows
        what = f"{what} × {steps} time steps"
    check_work(item.parameters, len(x) * rows * steps, fields, what)
    cost = item.costs.get("predict")
    if cost is None:
        shape = item.info.input_shape
        try:
            with seeded_inference(0):
                cost = RowCost.measure(lambda n: predict_fn(item.module, torch.zeros(n, *shape), 1))
        except Exception as exc:  # never seen; without a measure, the old fixed batches
            log.warning("no memory estimate for predict of job %s: %s", item.job_id, exc)
            cost = RowCost(0, max(1, FALLBACK_BYTES_PER_ROW))
        item.costs["predict"] = cost
    per_chunk = chunk_size(cost, rows, [mc_field] if rows > 1 else [input_field], "passes")
    with seeded_inference(seed):
        out = cal.predict_batched(predict_fn, item.module, x, mc, batch_size=per_chunk)
    return out, echo


def refuse_non_finite(out: dict[str, torch.Tensor], field: str) -> None:
    """422 naming the first input whose prediction overflowed to NaN or inf (an input far
    outside the training data can take a network there)."""
    bad: torch.Tensor | None = None
    for v in out.values():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() >= 1:
            rows = ~torch.isfinite(v.reshape(len(v), -1)).all(1)
            bad = rows if bad is None else bad | rows
    if bad is not None and bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise field_problem(
            f"{field}[{i}]",
            "the prediction overflows to NaN or inf: the input lies too far outside the "
            "data the model was trained on",
        )
