"""Every registered family on tiny configs: build, fit, checkpoint, resume, predict."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from models.context import LocalContext
from models.data import Dataset, load
from models.family import Capability, Diverged, Family, Params
from models.generative import SampleOptions
from models.registry import REGISTRY
from tests.models._helpers import TINY_PARAMS, RecordingContext, tiny

FIT_MATRIX = [
    (name, ds) for name, fam in REGISTRY.items() for ds in sorted(fam.datasets) if ds != "mnist5k"
]


def tiny_params(family: Family, **overrides: Any) -> Params:
    return family.params(**{**TINY_PARAMS.get(family.name, {}), **overrides})


def predict(family: Family, module: nn.Module, x: torch.Tensor, t: int = 5) -> dict[str, Any]:
    predict_fn = family.capability(Capability.PREDICT)
    torch.manual_seed(123)  # MC dropout samples masks: same seed, same masks
    return predict_fn(module, x, t)


def infer(family: Family, module: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """What the family answers at inference: predictions, or log p and seeded samples."""
    if Capability.PREDICT in family.capabilities:
        return predict(family, module, x)
    out: dict[str, Any] = {}
    if Capability.LOG_PROB in family.capabilities:
        out["log_prob"] = family.capability(Capability.LOG_PROB)(module, x, None, 2).log_prob
    if Capability.SAMPLE in family.capabilities:
        sample = family.capability(Capability.SAMPLE)
        out["samples"] = sample(module, SampleOptions(n=len(x), seed=5))
    return out


def check_generative_output(out: dict[str, Any], data: Dataset, n: int) -> None:
    if "log_prob" in out:
        assert out["log_prob"].shape == (n,) and torch.isfinite(out["log_prob"]).all()
    if "samples" in out:
        assert out["samples"].shape == (n, *data.info.input_shape)
        assert torch.isfinite(out["samples"]).all()


def check_predict_output(out: dict[str, Any], data: Dataset, n: int) -> None:
    """Single-task keys, or ``<task>.<key>`` for each task of a multitask set."""
    if data.info.task == "multitask":
        for t in data.info.tasks:
            sub = {k.split(".", 1)[1]: v for k, v in out.items() if k.startswith(f"{t.name}.")}
            check_task_output(sub, t.kind, t.dim, t.n_classes, n)
        assert sum(k.count(".") for k in out) == len(out)  # every key belongs to one task
    else:
        info = data.info
        check_task_output(out, info.task, info.target_dim, info.n_classes, n)


def check_task_output(
    out: dict[str, Any], kind: str, target_dim: int, n_classes: int | None, n: int
) -> None:
    shapes: dict[str, tuple[int, ...]]
    if kind == "regression":
        keys = {"mean", "epistemic_var", "aleatoric_var", "total_var"}
        shapes = dict.fromkeys(keys, (n, target_dim))
    else:
        c = n_classes or 0
        shapes = {"probs": (n, c)} | dict.fromkeys(
            ["predictive_entropy", "expected_entropy", "mutual_information"], (n,)
        )
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    assert all(torch.isfinite(v).all() for v in out.values())
    if kind == "classification":
        torch.testing.assert_close(out["probs"].sum(-1), torch.ones(n))
    else:
        assert (out["epistemic_var"] >= 0).all() and (out["aleatoric_var"] >= 0).all()


def weights_only_round_trip(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint state travels as bytes and loads without unpickling code."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded: dict[str, Any] = torch.load(buf, weights_only=True)
    return loaded


@pytest.mark.parametrize("name", list(REGISTRY))
def test_family_record_is_complete(name: str) -> None:
    fam = REGISTRY[name]
    params_cls: Any = fam.params
    assert fam.name == name and fam.description and fam.default_epochs > 0
    schema = fam.params.model_json_schema()
    for field, prop in schema["properties"].items():
        assert prop.get("description"), f"{name}.{field} has no description"
    with pytest.raises(ValidationError):
        params_cls(not_a_field=1)
    for ds in fam.datasets:
        assert load(ds).info.name == ds


@pytest.mark.parametrize("name", ["mlp", "mc_dropout", "ensemble", "multitask"])
def test_hidden_widths_are_bounded(name: str) -> None:
    params: Any = REGISTRY[name].params
    for bad in ([], [0], [4097], [8] * 9):
        with pytest.raises(ValidationError):
            params(hidden=bad)
    # the bounds themselves are accepted, and kept as given
    assert params(hidden=[1] * 8).hidden == [1] * 8
    assert params(hidden=[4096]).hidden == [4096]


@pytest.mark.parametrize(
    ("name", "dataset"), [(n, d) for n, f in REGISTRY.items() for d in sorted(f.datasets)]
)
def test_build_and_predict_shapes_on_every_dataset(name: str, dataset: str) -> None:
    fam, data = REGISTRY[name], load(dataset)
    module = fam.build(tiny_params(fam), data.info)
    if Capability.PREDICT in fam.capabilities:
        check_predict_output(predict(fam, module, data.x_test[:3]), data, 3)
    else:
        check_generative_output(infer(fam, module, data.x_test[:3]), data, 3)


@pytest.mark.parametrize(("name", "dataset"), FIT_MATRIX)
def test_fit_checkpoint_round_trip(name: str, dataset: str) -> None:
    fam, data = REGISTRY[name], tiny(dataset)
    params = tiny_params(fam)
    module = fam.build(params, data.info)
    ctx = RecordingContext(epochs=2, batch_size=32)
    fam.fit(module, data, params, ctx)

    assert [s for s, m in ctx.history if "train_loss" in m] == [1, 2]
    assert all(math.isfinite(v) for _, m in ctx.history for v in m.values())
    assert {"train_loss", "val_loss"} <= set(ctx.history[0][1])
    assert ctx.last_progress == (2, 2)
    assert [(s, st["epoch"]) for s, st, _ in ctx.checkpoints] == [(1, 1), (2, 2)]
    assert ctx.checkpoints[0][2]  # the first epoch is always the best so far

    state = weights_only_round_trip(ctx.checkpoints[-1][1])
    fresh = fam.build(params, data.info)
    fresh.load_state_dict(state["model"])
    x = data.x_test[:7]
    a, b = infer(fam, module, x), infer(fam, fresh, x)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if Capability.PREDICT in fam.capabilities:
        check_predict_output(a, data, 7)
    else:
        check_generative_output(a, data, 7)


@pytest.mark.parametrize(
    ("name", "dataset"),
    [
        ("mlp", "diabetes"),
        ("mc_dropout", "moons"),
        ("mc_dropout", "sine_gap"),
        ("ensemble", "moons"),
        ("ensemble", "sine_gap"),
        ("multitask", "multitask_synth"),
        ("vae", "digits_bin"),
        ("vae", "moons"),
        ("gan", "moons"),
        ("gan", "digits"),
    ],
)
def test_resume_continues_exactly_where_it_stopped(name: str, dataset: str) -> None:
    fam, data = REGISTRY[name], tiny(dataset)
    params = tiny_params(fam)

    torch.manual_seed(0)  # same initial weights for both runs, as the runner seeds before build
    straight = fam.build(params, data.info)
    fam.fit(straight, data, params, RecordingContext(epochs=3, batch_size=32))

    torch.manual_seed(0)
    first = fam.build(params, data.info)
    ctx1 = RecordingContext(epochs=2, batch_size=32)
    fam.fit(first, data, params, ctx1)
    resumed = fam.build(params, data.info)
    ctx2 = RecordingContext(epochs=3, batch_size=32, resume=ctx1.checkpoints[-1][1])
    ctx2.set_rng(ctx1.rng[-1])  # the runner restores RNG states with the checkpoint
    fam.fit(resumed, data, params, ctx2)

    assert [s for s, m in ctx2.history if "train_loss" in m] == [3]
    assert [s for s, _, _ in ctx2.checkpoints] == [3]
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


@pytest.mark.parametrize("name", list(REGISTRY))
def test_steps_mode_counts_optimizer_steps(name: str) -> None:
    fam, data = REGISTRY[name], tiny("moons")  # 160 examples: 5 batches of 32 per epoch
    params = tiny_params(fam)
    module = fam.build(params, data.info)
    ctx = RecordingContext(steps=7, batch_size=32)
    fam.fit(module, data, params, ctx)
    assert [s for s, m in ctx.history if "train_loss" in m] == [5, 7]
    assert ctx.last_progress == (7, 7)
    state = ctx.checkpoints[-1][1]
    assert (state["epoch"], state["step"]) == (2, 7)
    assert all(int(s["step"]) == 7 for s in state["optimizer"]["state"].values())


@pytest.mark.parametrize("name", list(REGISTRY))
def test_should_stop_keeps_the_last_whole_epoch(name: str) -> None:
    """Stopped mid-epoch 2: epoch 1's state is the last checkpoint, so a resume redoes
    epoch 2 whole and its metrics have no gap."""
    fam, data = REGISTRY[name], tiny("moons")
    params = tiny_params(fam)
    module = fam.build(params, data.info)
    ctx = RecordingContext(epochs=5, batch_size=32, stop_after=7)  # 5 steps, then 2 more
    fam.fit(module, data, params, ctx)
    steps, states = [s for s, _, _ in ctx.checkpoints], [st for _, st, _ in ctx.checkpoints]
    assert steps == [1] and (states[-1]["epoch"], states[-1]["step"]) == (1, 5)
    assert [s for s, m in ctx.history if "train_loss" in m] == [1]
    assert not any(k.startswith("test_") for _, m in ctx.history for k in m)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_should_stop_counting_steps_checkpoints_the_partial_epoch(name: str) -> None:
    fam, data = REGISTRY[name], tiny("moons")
    params = tiny_params(fam)
    module = fam.build(params, data.info)
    ctx = RecordingContext(steps=50, batch_size=32, stop_after=7)
    fam.fit(module, data, params, ctx)
    state = ctx.checkpoints[-1][1]
    assert (ctx.checkpoints[-1][0], state["step"]) == (7, 7)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_non_finite_loss_raises_diverged(name: str) -> None:
    fam = REGISTRY[name]
    if Capability.PREDICT in fam.capabilities:
        base = tiny("sine_gap")
        x, y = base.x_train, base.y_train.clone()
        y[:] = float("nan")
    else:  # a generative family learns from the inputs alone
        base = tiny("moons")
        x, y = torch.full_like(base.x_train, float("nan")), base.y_train
    data = Dataset(base.info, x, y, base.x_val, base.y_val, base.x_test, base.y_test)
    params = tiny_params(fam)
    with pytest.raises(Diverged, match=r"^diverged at step 1$") as err:
        fam.fit(fam.build(params, data.info), data, params, LocalContext(epochs=1))
    assert isinstance(err.value, FloatingPointError) and err.value.step == 1


def test_mnist5k_tiny_run() -> None:
    fam, data = REGISTRY["mc_dropout"], tiny("mnist5k", n_train=96, n_eval=16)
    params = tiny_params(fam)
    module = fam.build(params, data.info)
    ctx = LocalContext(epochs=1, batch_size=32)
    fam.fit(module, data, params, ctx)
    assert {"val_accuracy", "test_accuracy", "test_nll"} <= {k for _, m in ctx.history for k in m}
    check_predict_output(predict(fam, module, data.x_test), data, 16)
