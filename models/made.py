"""``made``: masked autoencoder for distribution estimation (Germain et al. 2015, "MADE:
Masked Autoencoder for Distribution Estimation").

An autoregressive model p(x) = Π_i p(x_i | x_<i) (the notes, §7.1) whose conditionals all
come out of one pass of a fully connected network with masked weights
(``models.nets.made.MADE``): output i sees only the inputs before i in the order. The
likelihood is exact, so training maximises log p(x) itself, and sampling is sequential:
one batched pass per dimension, in the order.

- ``likelihood``: ``bernoulli`` for binary data (one logit per pixel; log P(x) is a
  probability, no dequantisation), ``mog`` for real-valued data (per dimension a mixture
  of ``components`` Gaussians: weights, means, log scales, on standardised values);
  ``auto`` picks by the data.
- ``order``: ``natural`` (x_1, x_2, ...) or ``random`` (a permutation drawn per mask).
- ``num_masks`` > 1: connectivity-agnostic training (§4.2): each step uses the next of
  ``num_masks`` fixed masks (seed m: the order if random and the hidden degrees), so the
  one network learns many orderings; ``inference_masks`` averages the model over the
  first of them at test time, log p(x) = log (1/M) Σ_m p_m(x) (§4.3), and sampling
  draws each sample's mask uniformly from the same M (so samples follow that mixture).

Checkpoint ``state["model"]`` keys: ``made.net.<k>.{weight,bias,mask}`` (the masks of the
last mask used), ``shift``, ``scale`` (standardisation of real-valued data), ``step``
(training steps taken: which mask comes next).
"""

from __future__ import annotations

import math
import threading
from contextlib import AbstractContextManager
from typing import Literal, Self
from weakref import WeakKeyDictionary

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from models.autoregressive import (
    AutoregressiveDensity,
    complete_capability,
    conditional_log_prob,
    draw_conditional,
    fit_density,
    log_prob_capability,
    outputs_per_dim,
    receptive_field_capability,
    resolve_likelihood,
    sample_capability,
)
from models.data import DataInfo, Dataset
from models.family import EXACT_TEST_NLL, Capability, Context, Family, Params
from models.layers import ActivationName, Hidden
from models.nets.made import MADE

DATASETS = frozenset({"digits_bin", "mnist5k_bin", "moons", "rings8", "grid25", "checkerboard"})

# Masks live in the module's buffers and a multi-mask model rewrites them per mask, while
# the API serves one cached module to concurrent requests: each module's mask changes
# and the passes that read them hold its lock (a weak map: the module stays deep-copyable).
_MASK_LOCKS: WeakKeyDictionary[nn.Module, threading.RLock] = WeakKeyDictionary()
_MASK_LOCKS_GUARD = threading.Lock()


def mask_lock(module: nn.Module) -> threading.RLock:
    """The lock guarding ``module``'s masks (one per module, made on first use)."""
    with _MASK_LOCKS_GUARD:
        lock = _MASK_LOCKS.get(module)
        if lock is None:
            lock = _MASK_LOCKS[module] = threading.RLock()
        return lock


class MADEParams(Params):
    hidden: Hidden = Field(default_factory=lambda: [500], description="hidden layer widths")
    activation: ActivationName = Field("relu", description="nonlinearity of the hidden layers")
    order: Literal["natural", "random"] = Field(
        "natural", description="input order: natural, or a random permutation per mask"
    )
    num_masks: int = Field(
        1,
        ge=1,
        le=256,
        description="masks cycled through in training, one per step (connectivity-agnostic "
        "training when > 1: order and hidden degrees redrawn from seeds 0..num_masks-1)",
    )
    inference_masks: int = Field(
        1,
        ge=1,
        le=256,
        description="masks the test log-likelihood and sampling average over (the first of "
        "the num_masks): log p = log mean_m p_m",
    )
    likelihood: Literal["auto", "bernoulli", "mog"] = Field(
        "auto",
        description="conditionals p(x_i | x_<i): bernoulli (binary data), mog (a mixture "
        "of Gaussians per dimension, real-valued data); auto picks by the data",
    )
    components: int = Field(5, ge=1, le=64, description="mog: Gaussians per dimension")

    @model_validator(mode="after")
    def _masks(self) -> Self:
        if self.inference_masks > self.num_masks:
            raise ValueError(
                f"inference_masks ({self.inference_masks}) averages over trained masks: "
                f"at most num_masks ({self.num_masks})"
            )
        return self


class MADEModel(AutoregressiveDensity):
    """The MADE and what it needs to read its data: ``log_prob(x)`` in the data's units
    (averaged over masks), ``sample(n, ...)``, ``use_mask(m)``."""

    step: Tensor

    def __init__(self, params: MADEParams, info: DataInfo) -> None:
        likelihood = resolve_likelihood("made", params.likelihood, info)
        super().__init__(info, likelihood, params.components)
        self.params = params
        self.k = outputs_per_dim(self.likelihood, params.components)
        self.made = MADE(
            self.order_of(0), params.hidden, params.activation, k=self.k, zero_init=False
        )
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    # --- masks ---

    def order_of(self, m: int) -> Tensor:
        """Mask m's order: order[j] is the position of input j."""
        if self.params.order == "natural":
            return torch.arange(self.d, device="cpu")
        gen = torch.Generator().manual_seed(m)
        return torch.randperm(self.d, generator=gen, device="cpu")

    def use_mask(self, m: int) -> None:
        """Rewrite the masks to mask m (m = 0 with one mask: the fixed hidden degrees)."""
        self.made.set_masks(self.order_of(m), None if self.params.num_masks == 1 else m)

    def inference_masks(self) -> range:
        return range(self.params.inference_masks)

    # --- densities in network units u ---

    def log_prob_units(self, u: Tensor) -> Tensor:
        """log p_m(u) under the current mask (B,): Σ_i log p(u_i | u_<i)."""
        out = self.made.outputs(u)  # (B, k, D)
        return conditional_log_prob(self.likelihood, out, u, self.params.components)

    def training_loss(self, x: Tensor) -> Tensor:
        """The next mask of the cycle (by the step count in the checkpoint), then −log p."""
        self.use_mask(int(self.step) % self.params.num_masks)
        self.step += 1
        return super().training_loss(x)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) (B,) in the data's units: log (1/M) Σ_m p_m(x) over the inference masks
        (a probability for binary data, a density for real values)."""
        with mask_lock(self):
            return self._log_prob_locked(x)

    def _log_prob_locked(self, x: Tensor) -> Tensor:
        u = self.units(x)
        per_mask = []
        for m in self.inference_masks():
            self.use_mask(m)
            per_mask.append(self.log_prob_units(u))
        log_p = torch.logsumexp(torch.stack(per_mask), 0) - math.log(len(per_mask))
        return log_p + self.log_jacobian()

    # --- receptive fields and completions ---

    def positions(self) -> list[Tensor]:
        """Each inference mask's order as positions (order_of)."""
        return [self.order_of(m) for m in self.inference_masks()]

    def outputs_of(self, m: int, u: Tensor) -> Tensor:
        self.use_mask(m)
        return self.made.outputs(u)

    def locked(self) -> AbstractContextManager[object]:
        return mask_lock(self)

    # --- sampling ---

    @torch.no_grad()
    def sample(self, n: int, temperature: float, generator: torch.Generator) -> Tensor:
        """n samples (n, D) in the data's units; each sample's mask drawn uniformly from the
        inference masks; one batched pass per dimension, in the mask's order."""
        with mask_lock(self):
            return self._sample_locked(n, temperature, generator)

    def _sample_locked(self, n: int, temperature: float, generator: torch.Generator) -> Tensor:
        dev = self.shift.device
        n_masks = len(self.inference_masks())
        which = torch.randint(n_masks, (n,), generator=generator, device=generator.device)
        u = torch.zeros(n, self.d, device=dev)
        for m in self.inference_masks():
            rows = (which == m).nonzero().squeeze(1).to(dev)
            if len(rows) == 0:
                continue
            self.use_mask(m)
            u[rows] = self._sample_mask(len(rows), m, temperature, generator)
        return self.from_units(u)

    def _sample_mask(self, n: int, m: int, temperature: float, gen: torch.Generator) -> Tensor:
        dev = self.shift.device
        u = torch.zeros(n, self.d, device=dev)
        for i in torch.argsort(self.order_of(m)).tolist():  # dimensions in the order
            out = self.made.outputs(u)[:, :, i]  # (n, k)
            u[:, i] = draw_conditional(
                self.likelihood, out, self.params.components, temperature, gen
            )
        return u


def build(params: MADEParams, info: DataInfo) -> MADEModel:
    """The model; a likelihood the data cannot take raises ``ValueError`` (the API's 422)."""
    return MADEModel(params, info)


# --- training -------------------------------------------------------------------------------


def fit(module: nn.Module, data: Dataset, params: MADEParams, ctx: Context) -> None:
    assert isinstance(module, MADEModel)
    fit_density(module, data, ctx)


# --- inference ------------------------------------------------------------------------------

sample = sample_capability("made")
log_prob = log_prob_capability("made")
receptive_field = receptive_field_capability("made")
complete = complete_capability(lambda: FAMILY)  # the record its 409 names


def log_prob_passes(module: nn.Module) -> int:
    """log p averages over the inference masks: one forward per mask per input."""
    assert isinstance(module, MADEModel)
    return len(module.inference_masks())


FAMILY: Family = Family(
    name="made",
    description="MADE: masked autoregressive autoencoder, exact log p (Bernoulli or mixture "
    "of Gaussians conditionals), sequential sampling, order-agnostic training",
    params=MADEParams,
    datasets=DATASETS,
    capabilities={
        Capability.SAMPLE: sample,
        Capability.LOG_PROB: log_prob,
        Capability.RECEPTIVE_FIELD: receptive_field,
        Capability.COMPLETE: complete,
    },
    build=build,
    fit=fit,
    default_epochs=100,
    default_batch_size=128,
    log_prob_passes=log_prob_passes,
    likelihood=EXACT_TEST_NLL,
)
