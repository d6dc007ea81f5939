"""Shared layers: activations, the normaliser's buffers, the trunk, minibatches."""

from __future__ import annotations

import typing

import torch
from torch import nn

from models.layers import ACTIVATIONS, ActivationName, Normalizer, mlp_trunk
from models.loop import minibatches


def test_every_activation_name_has_a_module() -> None:
    assert set(typing.get_args(ActivationName)) == set(ACTIVATIONS)
    x = torch.linspace(-2, 2, 5)
    for make in ACTIVATIONS.values():
        assert make()(x).shape == x.shape


def test_normalizer_standardises_and_inverts() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g) * torch.tensor([1.0, 10.0, 0.5]) + 4
    y = torch.randn(200, 2, generator=g) * 3 - 1
    norm = Normalizer(3, 2)
    norm.fit(x, y)
    z = norm.x(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.y_raw(norm.y(y)), y)
    assert set(norm.state_dict()) == {"x_mean", "x_std", "y_mean", "y_std"}


def test_normalizer_starts_as_identity_and_floors_tiny_stds() -> None:
    norm = Normalizer(3)
    x = torch.zeros(100, 3)
    x[:, 1] = torch.linspace(-1, 1, 100)
    x[0, 2] = 1.0  # one bright pixel in a hundred: std ≈ 0.1, range 1
    assert torch.equal(norm.x(x), x)
    norm.fit(x)
    assert norm.x_std[0] == 1.0  # constant: no division by 0
    assert norm.x_std[1] == x[:, 1].std(unbiased=False)  # ordinary: untouched
    assert norm.x_std[2] == 0.1  # floored at a tenth of its range


def test_trunk_layout_with_batchnorm_before_the_activation() -> None:
    trunk = mlp_trunk(4, [8, 6], "tanh", batchnorm=True, dropout=0.2)
    kinds = [type(m) for m in trunk]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout] * 2
    bn = trunk[1]
    assert isinstance(bn, nn.BatchNorm1d) and bn.affine
    assert trunk[0].bias is None  # BatchNorm's β replaces it
    assert trunk(torch.randn(5, 4)).shape == (5, 6)


def test_batchnorm_affine_parameters_learn() -> None:
    trunk = mlp_trunk(3, [4], "relu", batchnorm=True)
    bn = trunk[1]
    assert isinstance(bn, nn.BatchNorm1d)
    names = {n for n, _ in trunk.named_parameters()}
    assert {"1.weight", "1.bias"} <= names  # γ and β are parameters, not buffers
    trunk(torch.randn(16, 3)).pow(2).sum().backward()
    assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0
    assert bn.bias.grad is not None and bn.bias.grad.abs().sum() > 0


def test_minibatches_partition_and_drop_a_lone_last_example() -> None:
    g = torch.Generator().manual_seed(0)
    batches = minibatches(10, 4, g)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert [len(b) for b in minibatches(9, 4, g)] == [4, 4]  # 9 = 4 + 4 + 1
    assert [len(b) for b in minibatches(1, 4, g)] == [1]
