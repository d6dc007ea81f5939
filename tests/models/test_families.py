"""The families that train by shuffled minibatches (``models.layers.train_epochs``, or a
loop of their own such as the GAN's): epochs and steps counted in optimizer steps, a stop
keeps whole epochs, a non-finite loss raises ``Diverged``. What every family must do,
whatever its loop, is in test_smoke.py."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import ValidationError

from models.context import LocalContext
from models.data import Dataset
from models.family import Capability, Diverged
from models.registry import REGISTRY
from tests.support.data import RecordingContext, tiny
from tests.support.smoke import Probe, check_predict, smoke_params

# 160 rows of moons in minibatches of 32: 5 optimizer steps an epoch
MINIBATCH = ["mlp", "mc_dropout", "ensemble", "multitask", "flow", "vae", "gan"]


@pytest.mark.parametrize("name", ["mlp", "mc_dropout", "ensemble", "multitask"])
def test_hidden_widths_are_bounded(name: str) -> None:
    params: Any = REGISTRY[name].params
    for bad in ([], [0], [4097], [8] * 9):
        with pytest.raises(ValidationError):
            params(hidden=bad)
    # the bounds themselves are accepted, and kept as given
    assert params(hidden=[1] * 8).hidden == [1] * 8
    assert params(hidden=[4096]).hidden == [4096]


@pytest.mark.parametrize("name", MINIBATCH)
def test_epochs_mode_logs_and_checkpoints_each_epoch(name: str) -> None:
    fam, data = REGISTRY[name], tiny("moons")
    params = smoke_params(fam)
    module = fam.build(params, data.info)
    ctx = RecordingContext(epochs=2, batch_size=32)
    fam.fit(module, data, params, ctx)
    assert [s for s, m in ctx.history if "train_loss" in m] == [1, 2]
    assert {"train_loss", "val_loss"} <= set(ctx.history[0][1])
    assert ctx.last_progress == (2, 2)
    assert [(s, st["epoch"], st["step"]) for s, st, _ in ctx.checkpoints] == [(1, 1, 5), (2, 2, 10)]
    assert ctx.checkpoints[0][2]  # the first epoch is always the best so far


@pytest.mark.parametrize("name", MINIBATCH)
def test_steps_mode_counts_optimizer_steps(name: str) -> None:
    fam, data = REGISTRY[name], tiny("moons")  # 160 examples: 5 batches of 32 per epoch
    params = smoke_params(fam)
    module = fam.build(params, data.info)
    ctx = RecordingContext(steps=7, batch_size=32)
    fam.fit(module, data, params, ctx)
    assert [s for s, m in ctx.history if "train_loss" in m] == [5, 7]
    assert ctx.last_progress == (7, 7)
    state = ctx.checkpoints[-1][1]
    assert (state["epoch"], state["step"]) == (2, 7)
    assert all(int(s["step"]) == 7 for s in state["optimizer"]["state"].values())


@pytest.mark.parametrize("name", MINIBATCH)
def test_should_stop_keeps_the_last_whole_epoch(name: str) -> None:
    """Stopped mid-epoch 2: epoch 1's state is the last checkpoint, so a resume redoes
    epoch 2 whole and its metrics have no gap."""
    fam, data = REGISTRY[name], tiny("moons")
    params = smoke_params(fam)
    module = fam.build(params, data.info)
    ctx = RecordingContext(epochs=5, batch_size=32, stop_after=7)  # 5 steps, then 2 more
    fam.fit(module, data, params, ctx)
    steps, states = [s for s, _, _ in ctx.checkpoints], [st for _, st, _ in ctx.checkpoints]
    assert steps == [1] and (states[-1]["epoch"], states[-1]["step"]) == (1, 5)
    assert [s for s, m in ctx.history if "train_loss" in m] == [1]
    assert not any(k.startswith("test_") for _, m in ctx.history for k in m)


@pytest.mark.parametrize("name", MINIBATCH)
def test_should_stop_counting_steps_checkpoints_the_partial_epoch(name: str) -> None:
    fam, data = REGISTRY[name], tiny("moons")
    params = smoke_params(fam)
    module = fam.build(params, data.info)
    ctx = RecordingContext(steps=50, batch_size=32, stop_after=7)
    fam.fit(module, data, params, ctx)
    state = ctx.checkpoints[-1][1]
    assert (ctx.checkpoints[-1][0], state["step"]) == (7, 7)


@pytest.mark.parametrize("name", MINIBATCH)
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
    params = smoke_params(fam)
    with pytest.raises(Diverged, match=r"^diverged at step 1$") as err:
        fam.fit(fam.build(params, data.info), data, params, LocalContext(epochs=1))
    assert isinstance(err.value, FloatingPointError) and err.value.step == 1


def test_mnist5k_tiny_run() -> None:
    fam, data = REGISTRY["mc_dropout"], tiny("mnist5k", n_train=96, n_eval=16)
    params = smoke_params(fam)
    module = fam.build(params, data.info)
    ctx = LocalContext(epochs=1, batch_size=32)
    fam.fit(module, data, params, ctx)
    assert {"val_accuracy", "test_accuracy", "test_nll"} <= {k for _, m in ctx.history for k in m}
    check_predict(Probe(fam, params, module.eval(), data, n=16))
