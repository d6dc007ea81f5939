"""``flow``: normalizing flows with an exact log-likelihood.

A flow is an invertible map x = f(z) of a standard normal base z ~ N(0, I); by the
change of variables (the notes' §5.3)

    log p(x) = log N(f⁻¹(x); 0, I) + log |det ∂f⁻¹/∂x|,

summed over the layers of f = f_K ∘ … ∘ f_1. Every layer here knows both directions
and the log-determinant of each: ``to_base`` (data -> noise, for the likelihood) and
``to_data`` (noise -> data, for sampling and reverse KL).

- ``planar`` (Rezende & Mohamed 2015, eq. 10): f(z) = z + û tanh(wᵀz + b), with
  û = u + (m(wᵀu) − wᵀu) w/‖w‖², m(a) = −1 + softplus(a), so wᵀû > −1 and the map
  is invertible (their appendix A.1). The inverse has no closed form, but along w it
  is a 1-D monotone equation wᵀx = α + wᵀû tanh(α + b) in α = wᵀz: bisection finds
  the root, and one Newton step with gradients gives the implicit-function gradient,
  so planar flows train by maximum likelihood too.
- ``radial`` (ibid., eq. 14): f(z) = z + β(z − z₀)/(α + r), r = ‖z − z₀‖, α > 0,
  β ≥ −α. Its inverse is closed form: ‖x − z₀‖ = r(1 + β/(α + r)) is a quadratic in r
  with one positive root.
- ``realnvp`` (Dinh et al. 2017): affine couplings x_b = z_b·exp(s(z_a)) + t(z_a) on
  alternating halves, log scales soft-clamped to (−c, c) by c·tanh(·/c).
- ``maf`` (Papamakarios et al. 2017): x_i = z_i·exp(α_i) + μ_i with (μ, α) a MADE
  (Germain et al. 2015) of x_<i; data -> noise is one pass, sampling D passes;
  the order is reversed between layers.

Objectives: ``forward_kl`` (maximum likelihood on the data, KL(p_data‖q)) or
``reverse_kl`` (variational inference, KL(q‖p) = E_q[log q − log p̃] + log Z for a
known unnormalised p̃, ``models/densities.py``). Reverse KL is mode-seeking: it
pays nothing for missing mass, so q under-covers p; the ``var_ratio`` metric
(tr Cov of samples / tr Cov of the target) shows it.

Data: 2-D points are standardised with the training split's statistics (an affine
layer whose Jacobian is counted). Images (digits, mnist5k) are dequantised
(v + u·Δ, u ~ U[0, 1)), scaled to [0, 1] and mapped to logit space with
p = α + (1 − 2α)y (Dinh et al. 2017, §4.1), the Jacobian included; log P of the
discrete pixels is reported in nats and bits/dim. Conditioners are MLPs on the
flattened image, not convolutional couplings.

With ``batchnorm`` (on by default for realnvp and maf by maximum likelihood) a batch
normalisation bijector follows every layer (``BatchNormFlow``): batch statistics in
training, running averages in eval mode, where log p is exact.

Checkpoint ``state["model"]`` keys: ``pre.*`` (standardisation or logit buffers),
``layers.<k>.*`` per transform (with batchnorm, transform k is ``layers.<2k>`` and its
normalisation ``layers.<2k+1>``, holding only ``running_mean`` and ``running_var``).
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Any, Literal, cast

import torch
import torch.nn.functional as F
from pydantic import Field, Strict, model_validator
from torch import Tensor, nn

from models.data import DataInfo, Dataset
from models.densities import TargetName, target_log_density, target_stats
from models.family import Capability, Context, Family, Params
from models.generative import (
    LogProb,
    OptionError,
    SampleOptions,
    bits_per_dim,
    dequantize,
    discrete_log_prob_offset,
    level_width,
)
from models.layers import ACTIVATIONS, ActivationName, train_epochs

Width = Annotated[int, Strict(), Field(ge=1, le=1024)]  # "64" and true are refused
EVAL_SAMPLES = 2000  # samples behind the reverse-KL and variance metrics
LOGIT_ALPHA = 0.05
BN_EPS = 1e-5  # BatchNormFlow's ε
DATASETS = frozenset({"moons", "rings8", "grid25", "checkerboard", "digits", "mnist5k"})


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


# --- layers: each maps both ways and returns (output, log|det| of that map) (B,) -------------


class Transform(nn.Module):
    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class Standardize(Transform):
    """z = (x − shift)/scale, with the training split's statistics."""

    shift: Tensor
    scale: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return (x - self.shift) / self.scale, -self.scale.log().sum().expand(len(x))

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * self.scale + self.shift, self.scale.log().sum().expand(len(z))


class Logit(Transform):
    """Dequantised pixels in [0, top) -> logit(α + (1 − 2α)·x/top)."""

    def __init__(self, top: float, alpha: float = LOGIT_ALPHA) -> None:
        super().__init__()
        self.top, self.alpha = top, alpha

    def _log_det_to_base(self, p: Tensor) -> Tensor:
        d = p.shape[1]
        const = d * (math.log(1 - 2 * self.alpha) - math.log(self.top))
        return const - (p.log() + (-p).log1p()).sum(1)

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * x / self.top
        return p.log() - (-p).log1p(), self._log_det_to_base(p)

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        p = torch.sigmoid(z)
        return (p - self.alpha) / (1 - 2 * self.alpha) * self.top, -self._log_det_to_base(p)


class Planar(Transform):
    """f(z) = z + û tanh(wᵀz + b) (Rezende & Mohamed 2015, eq. 10, appendix A.1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        w = torch.randn(dim) / math.sqrt(dim)
        # wᵀu = log(e − 1) gives û = 0: each layer starts near the identity
        u = math.log(math.e - 1 - 1e-4) * w / (w @ w) + 0.01 * torch.randn(dim)
        self.u, self.w, self.b = nn.Parameter(u), nn.Parameter(w), nn.Parameter(torch.zeros(()))

    def u_hat(self) -> Tensor:
        """û with wᵀû = −1 + softplus(wᵀu) > −1: f is invertible. (The 1e-4 keeps the
        bound strict in float32, where softplus of a very negative wᵀu is 0.)"""
        wu = self.w @ self.u
        m = F.softplus(wu) - 1 + 1e-4
        return self.u + (m - wu) * self.w / (self.w @ self.w + 1e-12)

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u = self.u_hat()
        h = torch.tanh(z @ self.w + self.b)  # (B,)
        log_det = torch.log1p((self.w @ u) * (1 - h**2))  # 1 + ûᵀψ(z), ψ = h'(·) w
        return z + h[:, None] * u, log_det

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u = self.u_hat()
        kappa, c = self.w @ u, x @ self.w  # along w: c = α + κ tanh(α + b), α = wᵀz
        a = self._root(kappa.detach(), self.b.detach(), c.detach())
        # one Newton step with gradients: the root's gradient by the implicit function theorem
        g = a + kappa * torch.tanh(a + self.b) - c
        a = a - g / (1 + kappa * (1 - torch.tanh(a + self.b) ** 2))
        h = torch.tanh(a + self.b)
        return x - h[:, None] * u, -torch.log1p(kappa * (1 - h**2))

    @staticmethod
    def _root(kappa: Tensor, b: Tensor, c: Tensor, iters: int = 40) -> Tensor:
        """Bisection for α + κ tanh(α + b) = c: increasing in α, root in c ± |κ|."""
        c64, k64, b64 = c.double(), kappa.double(), b.double()
        lo, hi = c64 - k64.abs() - 1e-6, c64 + k64.abs() + 1e-6
        for _ in range(iters):
            mid = (lo + hi) / 2
            above = mid + k64 * torch.tanh(mid + b64) > c64
            lo, hi = torch.where(above, lo, mid), torch.where(above, mid, hi)
        return ((lo + hi) / 2).to(c.dtype)


class Radial(Transform):
    """f(z) = z + β(z − z₀)/(α + ‖z − z₀‖), α > 0, β ≥ −α (Rezende & Mohamed 2015, eq. 14)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.z0 = nn.Parameter(torch.randn(dim))
        self.alpha_raw = nn.Parameter(torch.zeros(()))
        self.beta_raw = nn.Parameter(torch.zeros(()))

    def _ab(self) -> tuple[Tensor, Tensor]:
        alpha = F.softplus(self.alpha_raw)
        return alpha, F.softplus(self.beta_raw) - alpha

    def _log_det(self, r: Tensor, dim: int) -> Tensor:
        alpha, beta = self._ab()
        bh = beta / (alpha + r)
        return (dim - 1) * torch.log1p(bh) + torch.log1p(beta * alpha / (alpha + r) ** 2)

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        alpha, beta = self._ab()
        r = (z - self.z0).norm(dim=1)
        x = z + (beta / (alpha + r))[:, None] * (z - self.z0)
        return x, self._log_det(r, z.shape[1])

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        alpha, beta = self._ab()
        rho = (x - self.z0).norm(dim=1)  # = r (1 + β/(α + r)): r² + (α + β − ρ) r − ρα = 0
        q = alpha + beta - rho
        r = (-q + (q**2 + 4 * rho * alpha).sqrt()) / 2
        z = self.z0 + (x - self.z0) / (1 + beta / (alpha + r))[:, None]
        return z, -self._log_det(r, x.shape[1])


def conditioner(
    d_in: int, hidden: list[int], d_out: int, activation: ActivationName = "relu"
) -> nn.Sequential:
    """An MLP whose last layer starts at zero: every coupling starts as the identity."""
    layers: list[nn.Module] = []
    width = d_in
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    last = nn.Linear(width, d_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def soft_clamp(s: Tensor, c: float) -> Tensor:
    return c * torch.tanh(s / c)


class AffineCoupling(Transform):
    """x = m⊙z + (1 − m)⊙(z·exp(s(m⊙z)) + t(m⊙z)) (Dinh et al. 2017, eq. 9)."""

    mask: Tensor
    free: Tensor
    clamp_free: Tensor
    neg_clamp_free: Tensor

    def __init__(
        self, mask: Tensor, hidden: list[int], clamp: float, activation: ActivationName = "relu"
    ) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())
        free = 1 - mask.float()
        self.register_buffer("free", free, persistent=False)
        self.register_buffer("clamp_free", clamp * free, persistent=False)
        self.register_buffer("neg_clamp_free", -clamp * free, persistent=False)
        self.net = conditioner(len(mask), hidden, 2 * len(mask), activation)
        self.clamp = clamp

    def _st(self, kept: Tensor, clamp_free: Tensor) -> tuple[Tensor, Tensor]:
        """(±s, t): soft_clamp(s, c) on the free half only, in one product with ±c·(1 − m)
        (a step at 2-D costs per op, so the sign comes with the mask)."""
        s, t = self.net(kept).chunk(2, dim=1)
        return torch.tanh(s / self.clamp) * clamp_free, t * self.free

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._st(z * self.mask, self.clamp_free)
        return z * s.exp() + t, s.sum(1)

    def to_base_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z, −s (B, D)): the log-det is the row sum, left to ``Flow.to_base``."""
        neg_s, t = self._st(x * self.mask, self.neg_clamp_free)
        return (x - t) * neg_s.exp(), neg_s

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, neg_s = self.to_base_terms(x)
        return z, neg_s.sum(1)


class BatchNormFlow(Transform):
    """Batch normalisation as a bijector (Dinh et al. 2017, §3.7; Papamakarios et al. 2017,
    §3.4), without their learnable γ and β: data -> noise is z = (x − μ)/√(σ² + ε), with
    log|det| = −½ Σ_i log(σ_i² + ε).

    In training μ and σ² are the minibatch's (the gradient flows through them, as in any
    BatchNorm) and their running averages are updated; in eval mode the running averages
    are used, so the map is a fixed affine one and log p is exact. Sampling (noise ->
    data) always inverts the eval-mode map. Every layer's input is kept standardised,
    which makes a deep stack of couplings train faster and steadier (benchmarks.md). The
    affine part is left out: the next layer's shifts and scales can do its work, and at
    2-D a step's cost is mostly per parameter tensor and per op (benchmarks.md, flows).
    """

    running_mean: Tensor
    running_var: Tensor

    def __init__(self, dim: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.momentum, self.eps = momentum, BN_EPS  # one ε for all: Flow.to_base sums them

    def normalise(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z, the variance σ² (D,) it divided by): log|det| = −½ Σ log(σ² + ε)."""
        # F.batch_norm: one fused op that also updates the running statistics (the
        # unbiased variance, as nn.BatchNorm1d); the log-det takes the batch's biased one,
        # the variance the batch is divided by
        var = x.var(0, correction=0) if self.training else self.running_var
        z = F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            None,
            None,
            self.training,
            self.momentum,
            self.eps,
        )
        return z, var

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, var = self.normalise(x)
        return z, (-0.5 * torch.log(var + self.eps).sum()).expand(len(x))

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        std = torch.sqrt(self.running_var + self.eps)
        return z * std + self.running_mean, torch.log(std).sum().expand(len(z))


class MaskedLinear(nn.Linear):
    mask: Tensor

    def __init__(self, d_in: int, d_out: int, mask: Tensor) -> None:
        super().__init__(d_in, d_out)
        self.register_buffer("mask", mask.float())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """x (B, D) -> (μ, α) (B, D) each, output i depending on x_j only for order[j] < order[i]
    (Germain et al. 2015: degrees, masks M = [m_out ≥ m_in], strict at the output)."""

    def __init__(
        self, order: Tensor, hidden: list[int], activation: ActivationName = "relu"
    ) -> None:
        super().__init__()
        d = len(order)
        degrees = [order + 1]  # input degree 1..D
        for h in hidden:
            degrees.append(torch.arange(h) % max(1, d - 1) + 1)
        layers: list[nn.Module] = []
        for prev, cur in itertools.pairwise(degrees):
            mask = cur[:, None] >= prev[None, :]
            layers += [MaskedLinear(len(prev), len(cur), mask), ACTIVATIONS[activation]()]
        out_mask = (order + 1)[:, None] > degrees[-1][None, :]
        last = MaskedLinear(len(degrees[-1]), 2 * d, out_mask.repeat(2, 1))
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, alpha = self.net(x).chunk(2, dim=1)
        return mu, alpha


class MAF(Transform):
    """x_i = z_i·exp(α_i) + μ_i, (μ, α) = MADE(x_<i) (Papamakarios et al. 2017, eq. 2-3)."""

    order: Tensor

    def __init__(
        self, order: Tensor, hidden: list[int], clamp: float, activation: ActivationName = "relu"
    ) -> None:
        super().__init__()
        self.register_buffer("order", order)
        self.made = MADE(order, hidden, activation)
        self.clamp = clamp

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, alpha = self.made(x)
        return mu, soft_clamp(alpha, self.clamp)

    def to_base_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z, −α (B, D)): the log-det is the row sum, left to ``Flow.to_base``."""
        mu, alpha = self.made(x)
        neg_alpha = torch.tanh(alpha / self.clamp) * -self.clamp  # −soft_clamp(α, c)
        return (x - mu) * neg_alpha.exp(), neg_alpha

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, neg_alpha = self.to_base_terms(x)
        return z, neg_alpha.sum(1)

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.zeros_like(z)
        cols = torch.arange(z.shape[1], device=z.device)
        for i in torch.argsort(self.order).tolist():  # dimensions in autoregressive order
            mu, alpha = self._params(x)
            x = torch.where(cols == i, z * alpha.exp() + mu, x)  # out of place: autograd
        mu, alpha = self._params(x)  # α_i depends on x_<i only, all final now
        return x, alpha.sum(1)


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
        """(z, log|det ∂z/∂x|) (B,). The log-dets are summed once at the end, not layer by
        layer: the couplings' and MADEs' log scales (B, D) stacked, the batch
        normalisations' from their stacked variances (at 2-D a step costs per op, and
        this halves the ops of the log-det; ``tests/models/test_flow.py`` holds it to
        chaining each layer's own ``to_base``)."""
        z, log_det = self.pre.to_base(x)
        log_dets, terms, variances = [log_det], [], []
        for layer in self.transforms():
            if isinstance(layer, BatchNormFlow):
                z, var = layer.normalise(z)
                variances.append(var)
            elif isinstance(layer, AffineCoupling | MAF):
                z, term = layer.to_base_terms(z)
                terms.append(term)
            else:
                z, ld = layer.to_base(z)
                log_dets.append(ld)
        total = torch.stack(log_dets).sum(0)
        if terms:
            total = total + torch.stack(terms).sum((0, 2))
        if variances:
            total = total - 0.5 * torch.log(torch.stack(variances) + BN_EPS).sum()
        return z, total

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


def standard_normal_log_prob(z: Tensor) -> Tensor:
    return -0.5 * (z.pow(2).sum(1) + z.shape[1] * math.log(2 * math.pi))


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


# --- training -------------------------------------------------------------------------------


def fit(module: nn.Module, data: Dataset, params: FlowParams, ctx: Context) -> None:
    assert isinstance(module, Flow)
    dev, info = ctx.device, data.info
    module.to(dev)
    x, y = data.x_train.to(dev).flatten(1), data.y_train.to(dev)
    reverse = params.objective == "reverse_kl"
    if reverse and info.input_shape != (2,):
        raise ValueError("reverse_kl fits a known 2-D target density: train it on a 2-D set")
    log_target = target_log_density(params.target, info.name) if reverse else None
    if isinstance(module.pre, Standardize) and (not reverse or params.target == "dataset"):
        module.pre.shift.copy_(x.mean(0))
        module.pre.scale.copy_(x.std(0).clamp_min(1e-3))
    opt = ctx.make_optimizer(module.parameters())

    def loss_fn(xb: Tensor, _: Tensor) -> Tensor:
        if log_target is not None:
            return reverse_kl_loss(module, log_target, params.reverse_kl_samples)
        return nll_loss(module, xb)

    def validate() -> dict[str, float]:
        return evaluate(module, data, params, "val")

    if train_epochs(module, opt, x, y, ctx, loss_fn=loss_fn, evaluate=validate):
        module.eval()
        with torch.no_grad():
            metrics = evaluate(module, data, params, "test")
        ctx.log(ctx.epochs if ctx.epochs is not None else ctx.steps or 0, **metrics)


def evaluate(module: Flow, data: Dataset, params: FlowParams, split: str) -> dict[str, float]:
    """NLL on the split (nats per example; bits/dim for images); for 2-D models the variance
    ratio of samples to the data (or target); for reverse KL the KL and log Z estimates."""
    info = data.info
    x = (data.x_val if split == "val" else data.x_test).to(device_of(module))
    gen = torch.Generator().manual_seed(0 if split == "val" else 1)  # the same every epoch
    out: dict[str, float] = {}
    if params.objective == "forward_kl" or params.target == "dataset":
        log_p = torch.cat([discrete_log_prob(module, xb, 1, gen) for xb in x.flatten(1).split(512)])
        nll = float(-log_p.mean())
        out[f"{split}_nll"] = nll
        if level_width(info) is not None:
            out[f"{split}_bits_per_dim"] = float(bits_per_dim(log_p, info).mean())
    if info.input_shape == (2,):
        samples, log_q = module.sample(EVAL_SAMPLES, generator=gen)
        if params.objective == "reverse_kl":
            stats = target_stats(params.target, info.name)
            log_w = target_log_density(params.target, info.name)(samples) - log_q
            elbo = float(log_w.mean())
            out |= {
                f"{split}_reverse_kl": stats.log_z - elbo,
                "log_z_elbo": elbo,
                "log_z_iw": float(torch.logsumexp(log_w, 0)) - math.log(len(log_w)),
                "log_z_true": stats.log_z,
            }
            true_var = stats.total_var
        else:
            true_var = float(x.var(0).sum())
        out["var_ratio"] = float(samples.var(0).sum()) / true_var
    loss_key = f"{split}_reverse_kl" if params.objective == "reverse_kl" else f"{split}_nll"
    out[f"{split}_loss"] = out[loss_key]
    return out


# --- inference ------------------------------------------------------------------------------


def sample(module: nn.Module, opts: SampleOptions) -> Tensor:
    """n samples at ``temperature`` (base noise N(0, T²I)); images on their discrete levels."""
    assert isinstance(module, Flow)
    if opts.label is not None:
        raise OptionError("label", "flow models are unconditional: leave label out")
    module.eval()
    x, _ = module.sample(opts.n, opts.temperature, opts.generator())
    info, delta = module.info, level_width(module.info)
    if delta is not None and info.value_max is not None:
        x = (torch.floor(x / delta) * delta).clamp(0.0, info.value_max)
    return x.view(opts.n, *info.input_shape)


def log_prob(module: nn.Module, x: Tensor, labels: Tensor | None, k: int) -> LogProb:
    """Exact log p for continuous data; for discrete pixels the dequantisation bound with
    k draws of the noise (seeded: the same inputs give the same answer)."""
    assert isinstance(module, Flow)
    if labels is not None:
        raise OptionError("labels", "flow models are unconditional: leave labels out")
    module.eval()
    info = module.info
    x = x.to(device_of(module)).flatten(1)
    if level_width(info) is None:
        return LogProb(module.log_density(x), exact=True)
    top = info.value_max or 1.0
    if bool(((x < 0) | (x > top)).any()):
        raise OptionError("inputs", f"pixel values lie in [0, {top:g}] for {info.name}")
    gen = torch.Generator(device=x.device).manual_seed(0)
    return LogProb(discrete_log_prob(module, x, k, gen), exact=False, k=k)


FAMILY = Family(
    name="flow",
    description="normalizing flows (planar, radial, realnvp, maf): exact log p, sampling, "
    "forward or reverse KL",
    params=FlowParams,
    datasets=DATASETS,
    capabilities={Capability.SAMPLE: sample, Capability.LOG_PROB: log_prob},
    build=build,
    fit=fit,
    default_epochs=100,
    default_batch_size=128,
    default_log_prob_k=8,
    min_batch_size=lambda p: 2 if p.uses_batchnorm() else 1,
)
