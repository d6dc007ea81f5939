"""The flow family's bijectors: invertible layers that map both ways and give the
log-determinant of each direction (see ``models.flow`` for the maths and the papers).

- ``Standardize``, ``Logit``: the fixed first layer (2-D points; dequantised pixels,
  Dinh et al. 2017, §4.1).
- ``Planar``, ``Radial``: Rezende & Mohamed 2015, eqs. 10 and 14.
- ``AffineCoupling``: RealNVP (Dinh et al. 2017, eq. 9).
- ``MAF``: masked autoregressive flow (Papamakarios et al. 2017) on a ``MADE``
  (Germain et al. 2015, ``models.nets.made``).
- ``BatchNormFlow``: batch normalisation as a bijector (Dinh et al. 2017, §3.7).

Each ``Transform`` has ``to_base`` (data -> noise) and ``to_data`` (noise -> data),
returning (output, log|det| (B,)), and ``to_base_accumulate``, which adds its log-det
to a ``LogDet`` in the cheapest form it has, for ``Flow.to_base`` to sum once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.layers import ACTIVATIONS, ActivationName
from models.nets.made import MADE

LOGIT_ALPHA = 0.05
BN_EPS = 1e-5  # BatchNormFlow's ε


class LogDet:
    """The log|det ∂z/∂x| (B,) of a chain of bijectors, gathered in the form each bijector
    gives it and summed once at the end: per-example terms (B,); per-dimension terms
    (B, D) (the couplings' and MADEs' log scales), summed over D; and batch
    normalisations' variances σ² (D,), each contributing −½ Σ_i log(σ_i² + ε). At 2-D a
    step costs per op, and one stack and sum per form halves the ops of summing layer by
    layer (docs/benchmarks.md, flows)."""

    def __init__(self) -> None:
        self.per_example: list[Tensor] = []
        self.per_dim: list[Tensor] = []
        self.variances: list[Tensor] = []

    def add(self, log_det: Tensor) -> None:
        """A log-det per example (B,)."""
        self.per_example.append(log_det)

    def add_per_dim(self, terms: Tensor) -> None:
        """Terms (B, D) whose row sums are the log-det."""
        self.per_dim.append(terms)

    def add_variance(self, var: Tensor) -> None:
        """A batch normalisation's divisor σ² (D,), with ε = ``BN_EPS``."""
        self.variances.append(var)

    def total(self) -> Tensor:
        """The summed log-det (B,); needs at least one per-example term (B,)."""
        total = torch.stack(self.per_example).sum(0)
        if self.per_dim:
            total = total + torch.stack(self.per_dim).sum((0, 2))
        if self.variances:
            total = total - 0.5 * torch.log(torch.stack(self.variances) + BN_EPS).sum()
        return total


class Transform(nn.Module):
    """A bijector: both directions, each returning (output, log|det| of that map) (B,)."""

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def to_base_accumulate(self, x: Tensor, log_det: LogDet) -> Tensor:
        """z = ``to_base(x)``, its log-det added to ``log_det`` in this bijector's form
        (``Flow.to_base``); the same total as ``to_base``'s own log-det."""
        z, ld = self.to_base(x)
        log_det.add(ld)
        return z


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

    def _alpha_beta(self) -> tuple[Tensor, Tensor]:
        alpha = F.softplus(self.alpha_raw)
        return alpha, F.softplus(self.beta_raw) - alpha

    def _log_det(self, r: Tensor, dim: int) -> Tensor:
        alpha, beta = self._alpha_beta()
        bh = beta / (alpha + r)
        return (dim - 1) * torch.log1p(bh) + torch.log1p(beta * alpha / (alpha + r) ** 2)

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        alpha, beta = self._alpha_beta()
        r = (z - self.z0).norm(dim=1)
        x = z + (beta / (alpha + r))[:, None] * (z - self.z0)
        return x, self._log_det(r, z.shape[1])

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        alpha, beta = self._alpha_beta()
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

    def _log_scale_and_shift(self, kept: Tensor, clamp_free: Tensor) -> tuple[Tensor, Tensor]:
        """(±s, t): soft_clamp(s, c) on the free half only, in one product with ±c·(1 − m)
        (a step at 2-D costs per op, so the sign comes with the mask)."""
        s, t = self.net(kept).chunk(2, dim=1)
        return torch.tanh(s / self.clamp) * clamp_free, t * self.free

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._log_scale_and_shift(z * self.mask, self.clamp_free)
        return z * s.exp() + t, s.sum(1)

    def to_base_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z, −s (B, D)): the log-det is the row sum."""
        neg_s, t = self._log_scale_and_shift(x * self.mask, self.neg_clamp_free)
        return (x - t) * neg_s.exp(), neg_s

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, neg_s = self.to_base_terms(x)
        return z, neg_s.sum(1)

    def to_base_accumulate(self, x: Tensor, log_det: LogDet) -> Tensor:
        z, neg_s = self.to_base_terms(x)
        log_det.add_per_dim(neg_s)
        return z


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
        self.momentum, self.eps = momentum, BN_EPS  # one ε for all: LogDet sums them

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

    def to_base_accumulate(self, x: Tensor, log_det: LogDet) -> Tensor:
        z, var = self.normalise(x)
        log_det.add_variance(var)
        return z

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        std = torch.sqrt(self.running_var + self.eps)
        return z * std + self.running_mean, torch.log(std).sum().expand(len(z))


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
        """(z, −α (B, D)): the log-det is the row sum."""
        mu, alpha = self.made(x)
        neg_alpha = torch.tanh(alpha / self.clamp) * -self.clamp  # −soft_clamp(α, c)
        return (x - mu) * neg_alpha.exp(), neg_alpha

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, neg_alpha = self.to_base_terms(x)
        return z, neg_alpha.sum(1)

    def to_base_accumulate(self, x: Tensor, log_det: LogDet) -> Tensor:
        z, neg_alpha = self.to_base_terms(x)
        log_det.add_per_dim(neg_alpha)
        return z

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.zeros_like(z)
        cols = torch.arange(z.shape[1], device=z.device)
        for i in torch.argsort(self.order).tolist():  # dimensions in autoregressive order
            mu, alpha = self._params(x)
            x = torch.where(cols == i, z * alpha.exp() + mu, x)  # out of place: autograd
        mu, alpha = self._params(x)  # α_i depends on x_<i only, all final now
        return x, alpha.sum(1)
