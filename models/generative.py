"""What a generative family provides beyond ``fit``: sampling, log-likelihoods, and for
latent-variable models an encoder and a decoder.

The API (``app/api/generative.py``) serves every generative family through these
signatures alone, so a new family needs no route of its own. All tensors are in the
data's own units (``DataInfo``): digits in 0..16, mnist5k in [0, 1], 2-D points as
they are. Discrete data (``DataInfo.levels``) is modelled through uniform
dequantisation (Uria et al. 2013; Theis et al. 2016, "A note on the evaluation of
generative models"); a
log-likelihood is then reported for the discrete data, ``log P(v)``, which for a
density ``p`` on the dequantised values bounds it as
``log P(v) ≥ E_u log p((v + u)·Δ) + D log Δ`` with Δ the width of one level (and equals
it for a density constant within each level's cell).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from models.data import DataInfo


@dataclass(frozen=True)
class SampleOptions:
    """One ``GET /samples`` request: ``n`` samples drawn from ``seed`` (same seed, same
    samples), optionally of class ``label`` (conditional models) at ``temperature``
    (the scale of the latent or base noise, where the family has one)."""

    n: int
    seed: int = 0
    label: int | None = None
    temperature: float = 1.0
    # the most forward rows the sampler may run (the API's bound on work; None: no bound):
    # a sampler that draws proposals (GAN DRS) stops there with an OptionError on ``n``
    max_rows: int | None = None
    # a chain sampler's sweeps (Capability.CHAIN; the request's ``gibbs_steps``): None, the
    # family's default (its params' ``gibbs_steps``); others never read it
    steps: int | None = None

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed)


@dataclass(frozen=True)
class LogProb:
    """Per-input log-likelihood in nats (N,): exact (flows, autoregressive models), a
    lower bound (a VAE's importance-weighted bound with ``k`` samples) or, with ``stderr``,
    a stochastic estimate (an energy model's AIS log Z with ``k`` runs; ``stderr`` its
    standard error in nats, shared by every input)."""

    log_prob: Tensor
    exact: bool
    k: int | None = None  # importance samples behind a bound, or AIS runs behind an estimate
    stderr: float | None = None

    @property
    def kind(self) -> Literal["exact", "bound", "estimate"]:  # models.family.LikelihoodKind
        if self.exact:
            return "exact"
        return "bound" if self.stderr is None else "estimate"


# The capabilities' signatures (models.family.Capability -> function). Options are explicit
# arguments except the sampler's, which are many: labels are (N,) int64 classes for a
# conditional model or None; k the importance samples of a bound (1: the plain ELBO).
SampleFn = Callable[[nn.Module, SampleOptions], Tensor]  # -> (n, *input_shape)
LogProbFn = Callable[[nn.Module, Tensor, Tensor | None, int], LogProb]  # x, labels, k
EncodeFn = Callable[[nn.Module, Tensor, Tensor | None], dict[str, Tensor]]  # -> mean, log_var
DecodeFn = Callable[[nn.Module, Tensor, Tensor | None], Tensor]  # z, labels -> (n, *shape)
InterpolateFn = Callable[[Tensor, Tensor, int], Tensor]  # z_a (D,), z_b (D,), steps -> (steps, D)
# autoregressive models: which inputs the conditional of one dimension (its flat index in
# the input, row * W + col for an image) depends on, as a map (*input_shape) of gradient
# magnitudes (zero where an input cannot influence it, its own position included); and
# completions of x (N, *input_shape) where only ``observed`` (*input_shape, bool) is kept,
# the rest drawn from the model's conditionals (seed, temperature, label, max_rows from the
# options; n == N): the result keeps x where observed
ReceptiveFieldFn = Callable[[nn.Module, int], Tensor]
# a receptive field runs FIELD_PROBES fixed-seed inputs forward and back (about 3 forward
# rows each) through every pass one input's log-likelihood makes (Family.log_prob_passes):
# at most FIELD_ROWS × those passes, which the API bounds as it bounds other work
FIELD_PROBES = 8
FIELD_ROWS = 3 * FIELD_PROBES
CompleteFn = Callable[[nn.Module, Tensor, Tensor, SampleOptions], Tensor]
# energy-based models: each unit's weights as an image (units, *input_shape), e.g. an
# RBM's W[:, j] per hidden unit j, a Boltzmann machine's coupling row W[i, :] per unit i;
# and one Markov chain's states after each sweep count of ``at`` (ascending, 0 the start):
# (len(at), n, *input_shape) for ``n`` chains from ``seed`` (SampleOptions), the state at
# ``at[-1]`` being what SAMPLE with ``steps = at[-1]`` draws from the same options
FiltersFn = Callable[[nn.Module], Tensor]
ChainFn = Callable[[nn.Module, SampleOptions, Sequence[int]], Tensor]


def latent_path(z_a: Tensor, z_b: Tensor, steps: int) -> Tensor:
    """The straight line from ``z_a`` to ``z_b`` in ``steps`` points, ends included: the
    INTERPOLATE of a latent-variable model with a Gaussian prior (the API decodes it)."""
    t = torch.linspace(0, 1, steps)[:, None]  # (steps, 1)
    return (1 - t) * z_a.cpu() + t * z_b.cpu()  # (steps, D)


def level_width(info: DataInfo) -> float | None:
    """Δ, the spacing of the data's discrete levels (digits: 1; mnist5k: 1/255), or None."""
    if info.levels is None or info.value_max is None or info.levels < 2:
        return None
    return info.value_max / (info.levels - 1)


def bits_per_dim(log_prob: Tensor, info: DataInfo) -> Tensor:
    """−log₂ P per dimension: nats (N,) -> bits per dimension (N,)."""
    dims = math.prod(info.input_shape)
    return -log_prob / (dims * math.log(2))


def dequantize(x: Tensor, info: DataInfo, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantisation: each discrete value v becomes v + u·Δ, u ~ U[0, 1).

    Continuous data is returned as it is. (Binary data is usually modelled directly by a
    Bernoulli likelihood instead.)
    """
    delta = level_width(info)
    if delta is None:
        return x
    # drawn where the generator lives (seeded CPU generators serve any device), then moved
    at = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=at, dtype=x.dtype).to(x.device)
    return x + u * delta


def discrete_log_prob_offset(info: DataInfo) -> float:
    """D log Δ: add to the log-density of dequantised data for the log-probability of the
    discrete data (0 for continuous data)."""
    delta = level_width(info)
    return 0.0 if delta is None else math.prod(info.input_shape) * math.log(delta)


class NotAnswerable(RuntimeError):
    """A request this checkpoint cannot answer as it stands, whatever its options (an RBM
    checkpoint without a stored log Z whose AIS is over the requests' work bound); the API
    answers 409 with the message."""


class OptionError(ValueError):
    """A request option the model cannot honour (e.g. ``label`` for an unconditional
    model); the API answers 422 naming ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
