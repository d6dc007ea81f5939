"""The flow itself: its parameters, the ``Flow`` module (a fixed first layer and a stack
of bijectors over a standard normal base, see ``models.flow``), and its losses: the
(dequantised) log-likelihood for maximum likelihood and the reverse KL of Rezende &
Mohamed 2015 (eq. 15).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, cast

import torch
from pydantic import Field, Strict, model_validator
from torch import Tensor, nn

from models.data import DataInfo
from models.densities import TargetName, target_log_density
from models.family import Params
from models.flow.bijectors import (
    MAF,
    AffineCoupling,
    BatchNormFlow,
    LogDet,
    Logit,
    Planar,
    Radial,
    Standardize,
    Transform,
)
from models.generative import dequantize, discrete_log_prob_offset, level_width
from models.layers import ActivationName
from models.likelihoods import standard_normal_log_prob

Width = Annotated[int, Strict(), Field(ge=1, le=1024)]  # "64" and true are refused


class FlowParams(Params):
    transform: Literal["planar", "radial", "realnvp", "maf"] = Field(
        "realnvp", description="the layer kind (see docs/models.md#flow)"
    )
    layers: int = Field(8, ge=1, le=64, description="number of flow layers")
    hidden: list[Width] = Field(
        default_factory=lambda: [64, 64],
        min_length=1,
        max_length=4,
        description="hidden widths of each coupling net (realnvp) or MADE (maf)",
    )
    objective: Literal["forward_kl", "reverse_kl"] = Field(
        "forward_kl",
        description="forward_kl: maximum likelihood on the data; reverse_kl: fit a known "
        "2-D target density (mode-seeking)",
    )
    target: TargetName = Field(
        "dataset",
        description="reverse_kl's unnormalised target: the dataset's own density (rings8, "
        "grid25), Rezende & Mohamed's ring_u1, or banana",
    )
    reverse_kl_samples: int = Field(
        256, ge=2, le=8192, description="samples from the flow per reverse_kl step"
    )
    scale_clamp: float = Field(
        3.0, gt=0.0, le=10.0, description="soft bound c on log scales (realnvp, maf)"
    )
    activation: ActivationName = Field(
        "relu", description="nonlinearity of the conditioner networks (realnvp, maf)"
    )
    batchnorm: bool | None = Field(
        None,
        description="a batch-normalisation bijector after every layer (Dinh et al. 2017 "
        "§3.7; Papamakarios et al. 2017 §3.4); None: on for realnvp and maf trained by "
        "forward_kl, the only flows it applies to",
    )

    @model_validator(mode="after")
    def _target_is_for_reverse_kl(self) -> FlowParams:
        if self.target != "dataset" and self.objective != "reverse_kl":
            raise ValueError("target applies to objective 'reverse_kl' only")
        if self.batchnorm and not self._batchnorm_applies():
            raise ValueError(
                "batchnorm applies to realnvp and maf trained by forward_kl: its statistics "
                "come from data batches"
            )
        return self

    def _batchnorm_applies(self) -> bool:
        return self.transform in ("realnvp", "maf") and self.objective == "forward_kl"

    def uses_batchnorm(self) -> bool:
        return self._batchnorm_applies() if self.batchnorm is None else self.batchnorm


# --- the model ------------------------------------------------------------------------------


class Flow(nn.Module):
    """Data (B, D) <-> standard normal noise (B, D) through ``pre`` and ``layers``."""

    def __init__(self, params: FlowParams, info: DataInfo) -> None:
        super().__init__()
        self.info = info
        self.dim = d = math.prod(info.input_shape)
        delta = level_width(info)
        self.pre: Transform
        if delta is not None and info.value_max is not None:
            self.pre = Logit(info.value_max + delta)
        else:
            self.pre = Standardize(d)
        layers: list[Transform] = []
        for k in range(params.layers):
            layers.append(make_layer(params, k, d, info.image_shape))
            if params.uses_batchnorm():
                layers.append(BatchNormFlow(d))
        self.layers = nn.ModuleList(layers)

    def transforms(self) -> list[Transform]:
        return [cast(Transform, layer) for layer in self.layers]

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z, log|det ∂z/∂x|) (B,). Each bijector adds its log-det to one ``LogDet`` in
        its own form, summed once at the end, not layer by layer (at 2-D a step costs per
        op, and this halves the ops of the log-det; ``tests/models/test_flow.py`` holds
        it to chaining each layer's own ``to_base``)."""
        log_det = LogDet()
        z = self.pre.to_base_accumulate(x, log_det)
        for layer in self.transforms():
            z = layer.to_base_accumulate(z, log_det)
        return z, log_det.total()

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        log_det = torch.zeros(len(z), device=z.device)
        for layer in reversed(self.transforms()):
            z, ld = layer.to_data(z)
            log_det = log_det + ld
        x, ld = self.pre.to_data(z)
        return x, log_det + ld

    def log_density(self, x: Tensor) -> Tensor:
        """log p(x) (B,) of continuous (dequantised) data."""
        z, log_det = self.to_base(x.flatten(1))
        return standard_normal_log_prob(z) + log_det

    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Samples (n, D) and their log q (n,) under the flow at temperature 1."""
        device = device_of(self)
        # drawn where the generator lives (a seeded CPU generator gives the same samples
        # whatever device the flow is on), then moved
        at = generator.device if generator is not None else device
        z = temperature * torch.randn(n, self.dim, generator=generator, device=at).to(device)
        x, log_det = self.to_data(z)
        return x, standard_normal_log_prob(z) - log_det


def make_layer(
    params: FlowParams, k: int, dim: int, image_shape: tuple[int, ...] | None
) -> Transform:
    if params.transform == "planar":
        return Planar(dim)
    if params.transform == "radial":
        return Radial(dim)
    if params.transform == "maf":
        order = torch.arange(dim) if k % 2 == 0 else torch.arange(dim - 1, -1, -1)
        return MAF(order, params.hidden, params.scale_clamp, params.activation)
    idx = torch.arange(dim)
    if image_shape is not None:  # a checkerboard over the image
        idx = idx // image_shape[-1] + idx % image_shape[-1]
    return AffineCoupling((idx + k) % 2, params.hidden, params.scale_clamp, params.activation)


def device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def build(params: FlowParams, info: DataInfo) -> Flow:
    """The flow; params this dataset cannot take raise ``ValueError`` (the API's 422)."""
    if params.objective == "reverse_kl":
        if info.input_shape != (2,):
            raise ValueError("reverse_kl fits a known 2-D target density: train it on a 2-D set")
        target_log_density(params.target, info.name)  # a dataset without a known density
    return Flow(params, info)


# --- losses ---------------------------------------------------------------------------------


def discrete_log_prob(
    module: Flow, x: Tensor, k: int = 1, generator: torch.Generator | None = None
) -> Tensor:
    """log P of discrete data (B,): log (1/k) Σ_j p(x + u_j Δ) Δᴰ, a bound tighter in k
    (importance-weighted dequantisation); the plain density for continuous data."""
    info = module.info
    if level_width(info) is None:
        return module.log_density(x)
    x = x.flatten(1)
    xs = dequantize(x.expand(k, *x.shape), info, generator).reshape(-1, x.shape[1])
    log_p = module.log_density(xs).view(k, len(x))
    return torch.logsumexp(log_p, 0) - math.log(k) + discrete_log_prob_offset(info)


def nll_loss(module: Flow, x: Tensor) -> Tensor:
    """Forward KL up to a constant: −E log P(x) over the batch (dequantised once)."""
    return -discrete_log_prob(module, x).mean()


def reverse_kl_loss(module: Flow, log_target: Any, n: int) -> Tensor:
    """E_q[log q(x) − log p̃(x)] = KL(q‖p) − log Z (Rezende & Mohamed 2015, eq. 15)."""
    x, log_q = module.sample(n)
    return (log_q - log_target(x)).mean()
