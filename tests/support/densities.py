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


def codes(x: torch.Tensor) -> torch.Tensor:
    """Binary vectors (N, d) -> their index in ``all_binary(d)`` (N,)."""
    d = x.shape[1]
    return (x * 2 ** torch.arange(d - 1, -1, -1, dtype=x.dtype)).sum(1).long()


def completion_frequencies(drawn: torch.Tensor) -> torch.Tensor:
    """How often each of the 2^d binary vectors was drawn (2^d,), rows (N, d)."""
    return torch.bincount(codes(drawn), minlength=2 ** drawn.shape[1]).float() / len(drawn)


def conditional_by_enumeration(log_p: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
    """P(x | x agrees with ``given`` where it is not NaN) over all 2^d binary vectors
    (2^d,), from the joint's log-probabilities ``log_p`` (2^d,) of ``all_binary(d)``."""
    every = all_binary(len(given))
    known = ~torch.isnan(given)
    agrees = (every[:, known] == given[known]).all(1)
    p = torch.where(agrees, log_p.exp(), torch.zeros(()))
    return p / p.sum()


def independent_bernoulli_nll(x_train: torch.Tensor, x_test: torch.Tensor) -> float:
    """The test NLL (nats per example) of independent Bernoulli pixels whose
    probabilities are the training split's frequencies (add-one smoothed): the baseline
    an autoregressive model of binary images must beat by modelling dependence."""
    x, xt = x_train.flatten(1), x_test.flatten(1)
    p = (x.sum(0) + 1) / (len(x) + 2)
    return float(-(xt * p.log() + (1 - xt) * (1 - p).log()).sum(1).mean())


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
