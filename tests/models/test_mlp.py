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


def test_batchnorm_without_its_affine_keeps_every_unit_centred_and_scaled() -> None:
    """``batchnorm_affine: false``: no γ, β (and no bias in the Linear before it), so in
    training mode each unit's pre-activation has mean 0 and variance 1 over the batch,
    whatever the weights: nothing can undo the centring. Without batchnorm it is a 422."""
    data = tiny("digits")
    params = mlp.MLPParams(hidden=[8, 8], batchnorm=True, batchnorm_affine=False)
    module = mlp.build(params, data.info)
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(bns) == 2 and not any(bn.affine for bn in bns)
    assert not any("trunk.1.weight" in k or "trunk.1.bias" in k for k in module.state_dict())
    mlp.fit(module, data, params, LocalContext(epochs=2, batch_size=32))
    module.train()
    out = module.trunk[:2](module.normalizer.x(data.x_train[:64].flatten(1)))
    torch.testing.assert_close(out.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="batchnorm_affine"):
        mlp.MLPParams(batchnorm_affine=False)


def test_layer_gradient_norms_are_epoch_means_of_each_weights_gradient() -> None:
    data = tiny("moons")
    module = mlp.build(mlp.MLPParams(hidden=[8, 4]), data.info)
    grads = mlp.LayerGradients(module)
    assert grads.names == ["grad_norm_l1", "grad_norm_l2", "grad_norm_head"]
    expected = []
    for rows in (slice(0, 16), slice(16, 32)):
        module.zero_grad()
        mlp.loss(module, data.x_train[rows], data.y_train[rows]).backward()
        expected.append([float(w.grad.norm()) for w in grads.weights])  # type: ignore[union-attr]
        grads.add()
    means = grads.means()
    for i, name in enumerate(grads.names):
        assert means[name] == pytest.approx((expected[0][i] + expected[1][i]) / 2, rel=1e-6)
    assert grads.means() == {}  # reset: a new epoch starts from nothing
    ctx = LocalContext(epochs=2, batch_size=32)
    mlp.fit(module, data, mlp.MLPParams(hidden=[8, 4]), ctx)
    assert len(ctx.metric("grad_norm_l1")) == len(ctx.metric("grad_norm_head")) == 2


def test_sigmoid_saturation_shows_as_gradients_vanishing_towards_the_input() -> None:
    """At initialisation on the same batch, five sigmoid layers pass the input layer a
    gradient far smaller than the head's (each layer multiplies by σ' ≤ 1/4), where ReLU
    and tanh layers keep the two within a few times of each other."""
    data = tiny("digits")
    ratios = {}
    for activation in ("sigmoid", "relu", "tanh"):
        torch.manual_seed(0)
        params = mlp.MLPParams(hidden=[32] * 5, activation=activation)
        module = mlp.build(params, data.info)
        module.normalizer.fit(data.x_train.flatten(1), None)
        grads = mlp.LayerGradients(module)
        mlp.loss(module, data.x_train[:64], data.y_train[:64]).backward()
        grads.add()
        means = grads.means()
        ratios[activation] = means["grad_norm_l1"] / means["grad_norm_head"]
    assert ratios["sigmoid"] < 1e-2 < min(ratios["relu"], ratios["tanh"]) / 10, ratios


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
