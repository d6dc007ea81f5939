"""Tiny data descriptions for testing exact densities: every binary vector of a small
size (a probability sums to 1 over them), and real-valued inputs of a given size."""

from __future__ import annotations

import itertools

import torch

from models.data import DataInfo


def binary_info(d: int) -> DataInfo:
    """d binary dimensions (levels 0 and 1)."""
    return DataInfo(
        name=f"bits{d}",
        task="classification",
        input_shape=(d,),
        target_dim=1,
        n_classes=2,
        n_train=0,
        levels=2,
        value_max=1.0,
    )


def real_info(d: int) -> DataInfo:
    """d real-valued dimensions."""
    return DataInfo(
        name=f"real{d}",
        task="regression",
        input_shape=(d,),
        target_dim=1,
        n_classes=None,
        n_train=0,
    )


def all_binary(d: int) -> torch.Tensor:
    """Every binary vector of length d, (2^d, d)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)))


def image_info(height: int, width: int, levels: int = 2, n_classes: int = 3) -> DataInfo:
    """One-channel height × width images of ``levels`` grey levels 0..1, in ``n_classes``
    classes (flat input, as the built-in image sets)."""
    return DataInfo(
        name=f"images{height}x{width}L{levels}",
        task="classification",
        input_shape=(height * width,),
        target_dim=1,
        n_classes=n_classes,
        n_train=0,
        image_shape=(1, height, width),
        levels=levels,
        value_max=1.0,
    )


def all_images(d: int, levels: int) -> torch.Tensor:
    """Every vector of d values on ``levels`` levels 0..1, (levels^d, d), in raster order
    of the codes (the last value changes fastest)."""
    values = [i / (levels - 1) for i in range(levels)]
    return torch.tensor(list(itertools.product(values, repeat=d)))
