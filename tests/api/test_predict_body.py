"""The predict response body: a multitask model's outputs grouped per task (no stack needed)."""

from __future__ import annotations

import torch

from app.api.inference import prediction_body
from app.schemas import PredictOut
from models.data import load
from models.family import Capability
from models.registry import get_family


def test_multitask_outputs_are_grouped_per_task_with_intervals() -> None:
    fam, data = get_family("multitask"), load("multitask_synth")
    module = fam.build(fam.params(hidden=[4]), data.info)
    out = fam.capability(Capability.PREDICT)(module, data.x_test[:3], 1)
    body = prediction_body(data.info, out, 0.9)
    assert set(body) == {"tasks"}
    assert list(body["tasks"]) == [t.name for t in data.info.tasks]
    reg, cls = body["tasks"]["reg_quiet"], body["tasks"]["cls_noisy"]
    assert reg["kind"] == "regression" and reg["interval"]["level"] == 0.9
    assert len(reg["interval"]["lower"]) == 3 and "probs" not in reg
    assert cls["kind"] == "classification" and "interval" not in cls
    torch.testing.assert_close(torch.tensor(cls["probs"]).sum(-1), torch.ones(3))
    response = {"job_id": "j", "checkpoint": "c", "task": "multitask", "mc_samples": 1, **body}
    assert PredictOut.model_validate(response).tasks is not None


def test_single_task_body_is_unchanged() -> None:
    fam, data = get_family("mlp"), load("sine_gap")
    module = fam.build(fam.params(hidden=[4]), data.info)
    predict = fam.capability(Capability.PREDICT)
    body = prediction_body(data.info, predict(module, data.x_test[:2], 1), 0.95)
    assert set(body) == {"mean", "epistemic_var", "aleatoric_var", "total_var", "interval"}
