"""Calibration metrics of a finished job, on its test split, logged as ``cal_*`` metrics.

The runner calls ``log_calibration`` after a successful fit of a family with the
``predict`` capability. It describes the model inference serves: the weights of
the job's ``checkpoint`` (best by validation, else the latest), reloaded from the
database, not the module's final in-memory weights (they differ when the last
epoch was not the best). Predictions go through the family's PREDICT function with the
family's ``default_mc_samples``, in batches, exactly as ``POST .../predict`` would.

Names: ``cal_nll``, ``cal_rmse``, ``cal_coverage_95``, ``cal_width_95`` (regression,
raw target units) or ``cal_nll``, ``cal_accuracy``, ``cal_brier``, ``cal_ece``
(classification), at the job's final step. The ``cal_`` prefix belongs to the runner:
families log their own ``test_*`` numbers for their final weights at the same step,
and metric rows are unique per (job, name, step) with ON CONFLICT DO NOTHING, so a
shared name would silently keep only the first writer's value.
"""

from __future__ import annotations

import logging

import torch

from app.db.models import Checkpoint, Job
from app.db.session import session_scope
from models.calibration import predict_batched, predictive_metrics
from models.checkpoint import load_state
from models.data import DataKind, TensorTable
from models.family import Capability, Family, Params
from models.family import Context as _Context

log = logging.getLogger("deepzoo.runner")
PREFIX = "cal_"


def served_state(job_id: str) -> dict[str, torch.Tensor] | None:
    """The model weights of the checkpoint the job's inference uses, or None."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None or job.checkpoint_id is None:
            return None
        ckpt = s.get(Checkpoint, job.checkpoint_id)
        if ckpt is None:
            return None
        data = ckpt.data
    state = load_state(data)["model"]
    return state if isinstance(state, dict) else None


def calibration_metrics(
    family: Family,
    params: Params,
    data: DataKind,
    state: dict[str, torch.Tensor],
    device: torch.device | None = None,
) -> dict[str, float] | None:
    """``cal_*`` metrics of ``state`` on the test split, or None when not applicable (no
    ``predict``, or data that is not a table with a test split)."""
    if Capability.PREDICT not in family.capabilities:
        return None
    if not isinstance(data, TensorTable) or len(data.x_test) == 0:
        return None
    module = family.build(params, data.info)
    module.load_state_dict(state)
    module.to(device or torch.device("cpu")).eval()
    predict = family.capability(Capability.PREDICT)
    out = predict_batched(predict, module, data.x_test, family.default_mc_samples)
    metrics = predictive_metrics(out, data.y_test, data.info.task)
    if metrics is None:
        return None
    return {PREFIX + k: v for k, v in metrics.items()}


def log_calibration(
    job_id: str, family: Family, params: Params, data: DataKind, ctx: _Context, step: int
) -> None:
    """Evaluate the served checkpoint and log its metrics at ``step``; never fails the job."""
    if Capability.PREDICT not in family.capabilities:
        return
    try:
        state = served_state(job_id)
        metrics = (
            None if state is None else calibration_metrics(family, params, data, state, ctx.device)
        )
    except Exception:  # a trained model is kept even when its evaluation breaks
        log.exception("job %s: calibration evaluation failed; no cal_* metrics", job_id)
        return
    if metrics:
        ctx.log(step, **metrics)
