"""``nade``: the neural autoregressive distribution estimator (Larochelle & Murray 2011,
"The Neural Autoregressive Distribution Estimator"; real-valued RNADE: Uria, Murray &
Larochelle 2013, "RNADE: The real-valued neural autoregressive density-estimator").

An autoregressive model p(x) = Π_d p(x_{o_d} | x_{o_<d}) (the notes, §7.1) in one fixed
order o, whose conditionals share one hidden layer: with weights W (H × D) and bias c,

    a_1 = c,    a_{d+1} = a_d + W[:, o_d] x_{o_d},    h_d = act(a_d),

and p(x_{o_d} | x_{o_<d}) read from h_d by per-dimension output weights V[o_d], b[o_d].
Each a_d extends the previous one by one column, so all D hidden vectors cost O(DH) per
example; here they come out of one cumulative sum over the ordered columns W[:, o] x_o
(shifted by one). The likelihood is exact, so training maximises log p(x) itself, and
sampling is sequential: one batched step per dimension, in the order, updating the
running sum a as it goes.

- ``likelihood``: ``bernoulli`` for binary data (one logit per pixel; log P(x) is a
  probability, no dequantisation), ``mog`` for real-valued data (RNADE: per dimension a
  mixture of ``components`` Gaussians, weights, means and log scales from h_d, on
  standardised values); ``auto`` picks by the data.
- ``order``: ``natural`` (x_1, x_2, ...) or ``random`` (one permutation, seed 0, kept as
  the ``perm`` buffer).
- ``activation``: ``sigmoid`` (NADE) or ``relu`` (as RNADE allows).

Checkpoint ``state["model"]`` keys: ``W`` (H, D), ``c`` (H), ``V`` (D, k, H), ``b`` (D, k)
(k = 1 for bernoulli, 3 × components for mog), ``perm`` (the order: perm[d] is the
dimension at position d), ``shift``, ``scale`` (standardisation of real-valued data).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
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

DATASETS = frozenset({"digits_bin", "mnist5k_bin", "moons", "rings8", "grid25", "checkerboard"})


class NADEParams(Params):
    hidden: int = Field(500, ge=1, le=4096, description="width of the one hidden layer")
    activation: Literal["sigmoid", "relu"] = Field(
        "sigmoid", description="nonlinearity of the hidden layer: sigmoid (NADE) or relu (RNADE)"
    )
    order: Literal["natural", "random"] = Field(
        "natural", description="input order: natural, or a fixed random permutation (seed 0)"
    )
    likelihood: Literal["auto", "bernoulli", "mog"] = Field(
        "auto",
        description="conditionals p(x_i | x_<i): bernoulli (binary data), mog (a mixture "
        "of Gaussians per dimension, real-valued data); auto picks by the data",
    )
    components: int = Field(5, ge=1, le=64, description="mog: Gaussians per dimension")


class NADEModel(AutoregressiveDensity):
    """The NADE and what it needs to read its data: ``log_prob(x)`` in the data's units,
    ``outputs(u)`` (every conditional's parameters), ``sample(n, ...)``."""

    perm: Tensor

    def __init__(self, params: NADEParams, info: DataInfo) -> None:
        likelihood = resolve_likelihood("nade", params.likelihood, info)
        super().__init__(info, likelihood, params.components)
        self.params = params
        self.k = k = outputs_per_dim(self.likelihood, params.components)
        d, h = self.d, params.hidden
        self.W = nn.Parameter(torch.empty(h, d).uniform_(-1, 1) / math.sqrt(d))
        self.c = nn.Parameter(torch.zeros(h))
        self.V = nn.Parameter(torch.empty(d, k, h).uniform_(-1, 1) / math.sqrt(h))
        self.b = nn.Parameter(torch.zeros(d, k))
        if params.order == "natural":
            perm = torch.arange(d)
        else:
            perm = torch.randperm(d, generator=torch.Generator().manual_seed(0))
        self.register_buffer("perm", perm)

    def act(self, a: Tensor) -> Tensor:
        return torch.sigmoid(a) if self.params.activation == "sigmoid" else F.relu(a)

    # --- densities in network units u ---

    def hiddens(self, u: Tensor) -> Tensor:
        """h_d for every position d of the order (B, H, D): act(c + Σ_{e<d} W[:, o_e] u_{o_e}),
        one cumulative sum over the ordered columns (O(DH) per example)."""
        steps = self.W[:, self.perm][None] * u[:, self.perm][:, None]  # (B, H, D)
        running = steps.cumsum(2)
        a = torch.cat([torch.zeros_like(running[..., :1]), running[..., :-1]], 2)
        return self.act(a + self.c[None, :, None])

    def outputs(self, u: Tensor) -> Tensor:
        """Every conditional's parameters (B, k, D), column i for dimension i (data order)."""
        h = self.hiddens(u)  # (B, H, D), by position
        out = torch.einsum("bhd,dkh->bkd", h, self.V[self.perm]) + self.b[self.perm].T
        return out[:, :, torch.argsort(self.perm)]

    def log_prob_units(self, u: Tensor) -> Tensor:
        """log p(u) (B,): Σ_i log p(u_i | u_<i)."""
        out = self.outputs(u)  # (B, k, D)
        return conditional_log_prob(self.likelihood, out, u, self.params.components)

    # --- receptive fields and completions ---

    def positions(self) -> list[Tensor]:
        """The one order as positions: input j comes at place argsort(perm)[j]."""
        return [torch.argsort(self.perm)]

    def outputs_of(self, m: int, u: Tensor) -> Tensor:
        return self.outputs(u)

    def complete_rows(self, n: int, drawn: int) -> int:
        """The running sum makes a completion cost one forward, as sampling does: n rows."""
        return n

    def complete_mask(
        self, m: int, u: Tensor, drawn: Tensor, temperature: float, gen: torch.Generator
    ) -> Tensor:
        """The running sum a started from the observed dimensions (which all come before
        the ``drawn`` ones in the order), then one step per drawn dimension."""
        u = u.clone()
        kept = torch.ones(self.d, dtype=torch.bool, device=u.device)
        kept[drawn] = False
        a = self.c[None] + u[:, kept] @ self.W[:, kept].T  # (n, H)
        for i in drawn.tolist():
            out = self.act(a) @ self.V[i].T + self.b[i]  # (n, k)
            u[:, i] = draw_conditional(self.likelihood, out, self.components, temperature, gen)
            a = a + u[:, i, None] * self.W[:, i][None]
        return u

    # --- sampling ---

    def sample_rows(self, n: int) -> int:
        """The running sum makes all D sequential steps cost one forward: n rows."""
        return n

    @torch.no_grad()
    def sample(self, n: int, temperature: float, gen: torch.Generator) -> Tensor:
        """n samples (n, D) in the data's units: one batched step per dimension, in the
        order, the running sum a updated by each drawn value."""
        dev = self.shift.device
        u = torch.zeros(n, self.d, device=dev)
        a = self.c[None].expand(n, -1).clone()  # (n, H)
        for i in self.perm.tolist():
            out = self.act(a) @ self.V[i].T + self.b[i]  # (n, k)
            u[:, i] = draw_conditional(
                self.likelihood, out, self.params.components, temperature, gen
            )
            a = a + u[:, i, None] * self.W[:, i][None]
        return self.from_units(u)


def build(params: NADEParams, info: DataInfo) -> NADEModel:
    """The model; a likelihood the data cannot take raises ``ValueError`` (the API's 422)."""
    return NADEModel(params, info)


# --- training -------------------------------------------------------------------------------


def fit(module: nn.Module, data: Dataset, params: NADEParams, ctx: Context) -> None:
    assert isinstance(module, NADEModel)
    fit_density(module, data, ctx)


# --- inference ------------------------------------------------------------------------------

sample = sample_capability("nade")
log_prob = log_prob_capability("nade")
receptive_field = receptive_field_capability("nade")
complete = complete_capability(lambda: FAMILY)  # the record its 409 names


FAMILY: Family = Family(
    name="nade",
    description="NADE/RNADE: autoregressive density estimator with one shared hidden layer "
    "(O(DH) running sum), exact log p (Bernoulli or mixture of Gaussians conditionals), "
    "sequential sampling",
    params=NADEParams,
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
    likelihood=EXACT_TEST_NLL,
)
