"""Pieces the families share: activations, hidden-width types, input/target
normalisation and the fully connected trunk (the training loop is ``models.loop``).

BatchNorm (Ioffe & Szegedy 2015) normalises each unit over the minibatch and
then applies a learnable affine map γ x̂ + β, so the network can undo the
whitening where it hurts (the notes: "have linear function after batchnorm:
at beginning it's centered but can unlearn this"). It sits between the linear
layer and the activation, as in the paper (§3.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import torch
from pydantic import Field, Strict
from torch import Tensor, nn

from models.data import DataInfo

Width = Annotated[int, Strict(), Field(ge=1, le=4096)]  # "64" and true are refused
# hidden layer widths, the same bounds in every family: 1-8 layers of 1-4096 units
Hidden = Annotated[list[Width], Field(min_length=1, max_length=8)]

ActivationName = Literal["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


class Normalizer(nn.Module):
    """Standardises inputs and regression targets with training-split statistics.

    The statistics are buffers (``x_mean``, ``x_std``, ``y_mean``, ``y_std``), so
    every checkpoint carries them and inference takes raw inputs. They start as
    the identity; ``fit`` sets them from the training split.
    """

    x_mean: Tensor
    x_std: Tensor
    y_mean: Tensor
    y_std: Tensor

    def __init__(self, in_dim: int, target_dim: int = 1) -> None:
        super().__init__()
        self.register_buffer("x_mean", torch.zeros(in_dim))
        self.register_buffer("x_std", torch.ones(in_dim))
        self.register_buffer("y_mean", torch.zeros(target_dim))
        self.register_buffer("y_std", torch.ones(target_dim))

    @torch.no_grad()
    def fit(self, x: Tensor, y: Tensor | None = None) -> None:
        """x (N, D); y (N, target_dim) float targets, or None (classification: identity)."""
        self.x_mean.copy_(x.mean(0))
        std = x.std(0, unbiased=False)
        # A mostly constant feature (MNIST's border pixels) has a tiny std but a wide
        # range: flooring the std at a tenth of the range keeps its rare values from
        # becoming inputs in the hundreds; ordinary features (range of 4-6 stds) are
        # untouched. A constant feature gets std 1.
        std = torch.maximum(std, 0.1 * (x.amax(0) - x.amin(0)))
        self.x_std.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        if y is not None:
            self.y_mean.copy_(y.mean(0))
            y_std = y.std(0, unbiased=False)
            self.y_std.copy_(torch.where(y_std > 0, y_std, torch.ones_like(y_std)))

    def x(self, x: Tensor) -> Tensor:
        return (x - self.x_mean) / self.x_std

    def y(self, y: Tensor) -> Tensor:
        return (y - self.y_mean) / self.y_std

    def y_raw(self, y_norm: Tensor) -> Tensor:
        """Normalised target values back to raw units."""
        return y_norm * self.y_std + self.y_mean


def mlp_trunk(
    in_dim: int,
    hidden: Sequence[int],
    activation: str,
    batchnorm: bool = False,
    dropout: float = 0.0,
    dropout_layer: Callable[[float], nn.Module] = nn.Dropout,
    batchnorm_affine: bool = True,
) -> nn.Sequential:
    """[Linear, (BatchNorm1d), activation, (dropout)] per width: (B, in) -> (B, hidden[-1]).

    BatchNorm has its learnable γ, β (``batchnorm_affine``, the linear map after the
    normalisation that can undo it, Ioffe & Szegedy 2015) unless told otherwise, and the
    Linear before it drops its bias, which BatchNorm's centring would cancel anyway.
    ``dropout_layer`` lets MC dropout swap in a layer that stays on at inference.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers.append(nn.Linear(width, h, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(h, affine=batchnorm_affine))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(dropout_layer(dropout))
        width = h
    return nn.Sequential(*layers)


def head_width(info: DataInfo, heteroscedastic: bool) -> int:
    """Outputs of a predictive head: class logits, or means (and log variances)."""
    if info.task == "classification":
        return info.n_classes or 1
    return info.target_dim * (2 if heteroscedastic else 1)
