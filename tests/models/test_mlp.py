"""``mlp`` specifics: deterministic predict, BatchNorm's affine, homoscedastic noise, optimizers."""

from __future__ import annotations

import typing

import pytest
import torch
from torch import nn

from models import mlp
from models.context import LocalContext
from models.layers import ActivationName
from models.optim import OptimizerName, OptimizerSpec
from tests.support.data import tiny


def test_predict_is_deterministic_even_with_dropout() -> None:
    data = tiny("moons")
    params = mlp.MLPParams(hidden=[16], dropout=0.5)
    module = mlp.build(params, data.info)
    mlp.fit(module, data, params, LocalContext(epochs=1, batch_size=32))
    a, b = mlp.predict(module, data.x_test, 10), mlp.predict(module, data.x_test, 10)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(a["mutual_information"], torch.zeros(len(data.x_test)))


def test_batchnorm_affine_is_learned_by_fit() -> None:
    data = tiny("digits")
    params = mlp.MLPParams(hidden=[8, 8], batchnorm=True)
    module = mlp.build(params, data.info)
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(bns) == 2 and all(bn.affine for bn in bns)
    mlp.loss(module, data.x_train[:32], data.y_train[:32]).backward()
    for bn in bns:
        assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0  # γ
        assert bn.bias.grad is not None and bn.bias.grad.abs().sum() > 0  # β
    module.zero_grad()
    mlp.fit(module, data, params, LocalContext(epochs=1, batch_size=32))
    assert not torch.equal(bns[0].weight.detach(), torch.ones(8))
    assert not torch.equal(bns[0].bias.detach(), torch.zeros(8))


def test_regression_reports_validation_noise_in_raw_units() -> None:
    data = tiny("diabetes")
    params = mlp.MLPParams(hidden=[16])
    module = mlp.build(params, data.info)
    ctx = LocalContext(epochs=3, batch_size=32)
    mlp.fit(module, data, params, ctx)
    val_rmse = ctx.metric("val_rmse")[-1][1]
    assert float(module.noise_var) == pytest.approx(val_rmse**2, rel=1e-4)
    out = mlp.predict(module, data.x_test[:5], 1)
    assert torch.equal(out["epistemic_var"], torch.zeros(5, 1))
    assert torch.equal(out["aleatoric_var"], module.noise_var.expand(5, 1))
    assert torch.equal(out["total_var"], out["aleatoric_var"])
    # raw units: targets of diabetes are in the hundreds
    assert 25 < float(out["mean"].mean()) < 350


@pytest.mark.parametrize("optimizer", typing.get_args(OptimizerName))
def test_every_optimizer_trains(optimizer: OptimizerName) -> None:
    data = tiny("moons")
    params = mlp.MLPParams(hidden=[16])
    module = mlp.build(params, data.info)
    ctx = LocalContext(epochs=3, batch_size=32, optimizer=OptimizerSpec(name=optimizer, lr=0.01))
    mlp.fit(module, data, params, ctx)
    losses = [v for _, v in ctx.metric("train_loss")]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("activation", typing.get_args(ActivationName))
def test_every_activation_builds_and_runs(activation: ActivationName) -> None:
    data = tiny("sine_gap")
    module = mlp.build(mlp.MLPParams(hidden=[4], activation=activation), data.info)
    assert module(data.x_train[:3]).shape == (3, 1)
