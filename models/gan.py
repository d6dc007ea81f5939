"""``gan``: generative adversarial networks with the losses and tricks of the notes (§5.1).

Goodfellow et al. 2014: a generator G maps noise z ~ N(0, I) to data, a discriminator D
tells data from G's samples, and the two play the minimax game

    min_G max_D  V(D, G) = E_x log D(x) + E_z log(1 − D(G(z))),

whose inner maximum is ``2 JS(p_data ‖ p_G) − log 4`` (the Jensen–Shannon view). Every
loss here is a function of D's *logits* l (D = σ(l)), so no log of a saturated sigmoid
is ever taken:

- discriminator (all but ``wasserstein``): BCE(l_real, 1 − α) + BCE(l_fake, 0), with α the
  one-sided ``label_smoothing`` (Salimans et al. 2016): only real targets are smoothed.
- ``minimax``: G minimises log(1 − D(G(z))) = −softplus(l). Its gradient in l is −σ(l):
  it vanishes exactly when D rejects the fakes confidently (early training).
- ``non_saturating``: G minimises −log D(G(z)) = softplus(−l); gradient −σ(−l) → −1 there.
- ``max_likelihood`` (Goodfellow 2014b, tutorial 2016 §3.2.3):
  J_G = −½ E exp(σ⁻¹(D(G(z)))) = −½ E exp(l). At the optimal D its expected gradient is
  that of KL(p_data ‖ p_G), i.e. maximum likelihood. See ``max_likelihood_g_loss`` for
  the stable form.
- ``wasserstein`` (Arjovsky et al. 2017): the critic f maximises E f(x) − E f(G(z)) over
  1-Lipschitz f, enforced by ``wasserstein_constraint``: ``clip`` (weights clipped to
  [−c, c], c = 0.01, RMSProp as in the paper) or ``gp`` (Gulrajani et al. 2017: penalty
  λ E(‖∇f(x̂)‖₂ − 1)² at random interpolates x̂, λ = 10, Adam β = (0.5, 0.9)); G
  minimises −E f(G(z)). ``critic_steps`` critic updates per generator update (5 by
  default here, 1 for the other losses).

Tricks: ``conditional`` (Mirza & Osindero 2014: the label enters G through conditional
BatchNorm, per-class γ and β (de Vries et al. 2017; Miyato & Koyama 2018), and D through
one-hot concatenation), ``label_smoothing``, ``pack`` (PacGAN, Lin et al. 2018: D
judges m samples at once, concatenated, which penalises mode collapse), and ``r1``
(Mescheder et al. 2018: γ/2 E‖∇_x D(x)‖² on real data, any loss).

Nets: MLPs (ReLU + BatchNorm in G, LeakyReLU in D) for vector data; DCGAN-style
(Radford et al. 2016) transposed convolutions for images whose side is a multiple of 4.
Training counts generator steps; an epoch is one pass of D over the training split.
Diagnostics (``models.gan_metrics``) are logged after every epoch.

Discriminator rejection sampling (``drs``; Azadi et al. 2019): for the optimal D of a
BCE loss, D*(x) = p_data / (p_data + p_G), so its logit is l(x) = log p_data(x)/p_G(x).
Keeping a proposal x ~ p_G with probability exp(l(x) − M), M ≥ max_x l(x), leaves the
kept samples distributed as p_G · p_data/p_G ∝ p_data, whatever G missed or blurred
(within G's support). The D trained beside G is not the optimal D for the final G (it
chased a moving G), so after training D is fine-tuned for ``drs_steps`` with G fixed
(``calibrate_drs``: plain BCE, no smoothing, no R1). M is then the ``drs_quantile`` of
the logits of a burn-in of 10,000 proposals, and a proposal with l > M is always kept
(probability min(1, exp(l − M))). With the quantile 1 (M the largest logit) this is
exact rejection sampling, but one over-confident logit sets M for every proposal: D's
logit is least reliable where neither data nor fakes fall, and there a few proposals got
logits of 17 against a typical 0 on ``rings8``, so 1 proposal in 10,000 was kept. Below 1
the kept samples follow ∝ min(p_G, p_data/r), r = exp(M): p_data wherever G puts too much
mass (the samples between the modes, which DRS is for) and G's own density where the
ratio passes r; the default 0.95 plays the part of the paper's shift γ (which also
trades exactness for acceptance). ``GET /samples`` draws this way once M is set
(``sample``; ``sample_plain`` and ``decode`` stay plain); when fewer than 1 in 200
proposals are kept it answers 422 rather than run unbounded.
Needs a BCE loss (a Wasserstein critic is no density ratio) and ``pack`` 1 (a packed D
scores packs, not samples).

Checkpoint state: ``model`` (``g.*``, ``d.*``, and with ``drs`` the 0-d buffer
``drs_max_logit``: M, NaN until calibrated), ``optimizer`` (G's), ``optimizer_d``,
``epoch``, ``step`` (generator steps). Every checkpoint is marked best: a GAN's losses do
not rank sample quality, so inference uses the latest.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from models import gan_metrics
from models.data import DataInfo, Dataset
from models.family import Capability, Context, Decoder, Diverged, Family, Params
from models.generative import OptionError, SampleOptions, latent_path
from models.layers import Width, minibatches
from models.optim import Adam, RMSProp

GAN_DATASETS = frozenset({"rings8", "grid25", "moons", "digits", "mnist5k"})
Loss = Literal["minimax", "non_saturating", "max_likelihood", "wasserstein"]
ML_LOGIT_CAP = 20.0  # max_likelihood: exp(l) weights are exact for l ≤ 20 (D ≤ 1 − 2e-9)
DRS_BURN_IN = 10_000  # proposals whose logits' drs_quantile is M
DRS_BURN_IN_SEED = 0
DRS_CHUNK = 4_096  # proposals per draw: fixed, so the first n kept do not depend on n
DRS_MIN_PROPOSALS = 65_536  # the cap on proposals is max(200 n, this)
DRS_PROPOSALS_PER_SAMPLE = 200


class GANParams(Params):
    loss: Loss = Field("non_saturating", description="generator/discriminator objective")
    wasserstein_constraint: Literal["clip", "gp"] = Field(
        "gp", description="wasserstein: weight clipping (c=0.01) or gradient penalty (λ=10)"
    )
    critic_steps: int | None = Field(
        None, ge=1, le=20, description="D updates per G update (None: 5 for wasserstein, else 1)"
    )
    conditional: bool = Field(
        False, description="cGAN: labels into G (conditional BatchNorm) and D (one-hot)"
    )
    label_smoothing: float = Field(
        0.0, ge=0.0, le=0.5, description="one-sided: real targets 1 − α, fake targets stay 0"
    )
    pack: int = Field(1, ge=1, le=8, description="PacGAN: D judges this many samples at once")
    latent_dim: int = Field(8, ge=1, le=256, description="size of the noise z ~ N(0, I)")
    hidden_g: list[Width] = Field(
        default_factory=lambda: [128, 128, 128],
        min_length=1,
        max_length=6,
        description="MLP generator widths (vector data)",
    )
    hidden_d: list[Width] = Field(
        default_factory=lambda: [128, 128],
        min_length=1,
        max_length=6,
        description="MLP discriminator widths (vector data)",
    )
    batchnorm: bool = Field(
        True, description="BatchNorm in G (conditional BatchNorm when conditional)"
    )
    lr_decay: Literal["none", "linear"] = Field(
        "none", description="linear: both learning rates fall linearly to 0 at the last step"
    )
    architecture: Literal["auto", "mlp", "conv"] = Field(
        "auto", description="auto: DCGAN-style convolutions for images, MLPs otherwise"
    )
    conv_width: int = Field(32, ge=4, le=256, description="channels of the conv nets' first layer")
    optimizer: Literal["recipe", "job"] = Field(
        "recipe",
        description="recipe: each loss's published optimizer at lr; job: the job's for both nets",
    )
    lr: float = Field(1e-3, gt=0, le=1.0, description="learning rate of both nets (recipe)")
    clip: float = Field(0.01, gt=0, le=1.0, description="wasserstein clip: weight bound c")
    gp_weight: float = Field(10.0, ge=0, le=100, description="wasserstein gp: penalty weight λ")
    r1: float = Field(
        0.0,
        ge=0,
        le=100,
        description="R1 penalty γ/2 E‖∇_x D(x)‖² on real data (Mescheder et al. 2018); 0: off",
    )
    drs: bool = Field(
        False,
        description="discriminator rejection sampling (Azadi et al. 2019): after training, D "
        "is fine-tuned with G fixed (drs_steps) and /samples keeps each proposal x with "
        "probability min(1, exp(l(x) − M)), l its D logit and M the drs_quantile of the logits "
        "of 10,000 proposals",
    )
    drs_steps: int = Field(
        5000, ge=1, le=100_000, description="drs: D's fine-tuning steps with G fixed"
    )
    drs_quantile: float = Field(
        0.95,
        ge=0.5,
        le=1.0,
        description="drs: M is this quantile of the burn-in logits (1: their maximum, exact "
        "rejection sampling; lower: more kept, robust to a few over-confident logits)",
    )

    @model_validator(mode="after")
    def _drs_needs_a_density_ratio(self) -> GANParams:
        if self.drs and self.loss == "wasserstein":
            raise ValueError(
                "drs needs a BCE loss, not 'wasserstein': a critic is not a density ratio"
            )
        if self.drs and self.pack != 1:
            raise ValueError("drs needs pack 1: a packed D scores packs, not samples")
        return self

    def n_critic(self) -> int:
        if self.critic_steps is not None:
            return self.critic_steps
        return 5 if self.loss == "wasserstein" else 1


# --- networks ----------------------------------------------------------------------------


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine map, then the per-class γ_y x̂ + β_y."""

    def __init__(self, features: int, n_classes: int, dims: int = 1) -> None:
        super().__init__()
        bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        self.bn = bn(features, affine=False)
        self.gamma = nn.Embedding(n_classes, features)
        self.beta = nn.Embedding(n_classes, features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        h = self.bn(h)
        shape = (len(y), -1) + (1,) * (h.dim() - 2)  # broadcast over spatial dims
        return self.gamma(y).view(shape) * h + self.beta(y).view(shape)


class _Norm(nn.Module):
    """BatchNorm with a learnable affine map, its conditional version, or nothing."""

    def __init__(
        self, features: int, n_classes: int | None, dims: int = 1, on: bool = True
    ) -> None:
        super().__init__()
        self.norm: nn.Module
        if not on:
            self.norm = nn.Identity()
            n_classes = None
        elif n_classes is None:
            bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
            self.norm = bn(features)
        else:
            self.norm = ConditionalBatchNorm(features, n_classes, dims)
        self.conditional = n_classes is not None

    def forward(self, h: Tensor, y: Tensor | None) -> Tensor:
        return self.norm(h, y) if self.conditional else self.norm(h)


def _conv_base(info: DataInfo) -> tuple[int, int, int] | None:
    """(channels, side/4, side) when the data are square images with a side divisible by 4."""
    shape = info.image_shape
    if shape is None or len(shape) != 3 or shape[1] != shape[2] or shape[1] % 4:
        return None
    return shape[0], shape[1] // 4, shape[1]


class Generator(nn.Module):
    """(z (B, latent), labels (B,) or None) -> samples (B, D) flattened, in data units."""

    def __init__(self, params: GANParams, info: DataInfo, conv: bool) -> None:
        super().__init__()
        k = info.n_classes if params.conditional else None
        self.n_classes = k
        in_dim = params.latent_dim + (k or 0)  # one-hot labels beside z, and in every CBN
        self.out_dim = math.prod(info.input_shape)
        self.value_max = info.value_max if info.image_shape is not None else None
        self.conv = conv
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        if conv:
            c, s, _ = _conv_base(info)  # type: ignore[misc]
            w = params.conv_width
            self.base = (2 * w, s)
            self.layers.append(nn.Linear(in_dim, 2 * w * s * s, bias=False))
            self.norms.append(_Norm(2 * w * s * s, k, on=params.batchnorm))
            self.layers.append(nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False))  # s -> 2s
            self.norms.append(_Norm(w, k, dims=2, on=params.batchnorm))
            self.out: nn.Module = nn.ConvTranspose2d(w, c, 4, 2, 1)  # 2s -> 4s
        else:
            width = in_dim
            for h in params.hidden_g:
                self.layers.append(nn.Linear(width, h, bias=False))
                self.norms.append(_Norm(h, k, on=params.batchnorm))
                width = h
            self.out = nn.Linear(width, self.out_dim)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = z if self.n_classes is None else torch.cat([z, F.one_hot(y, self.n_classes)], 1)  # type: ignore[arg-type]
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms, strict=True)):
            h = layer(h)
            h = F.relu(norm(h, y))
            if self.conv and i == 0:
                c, s = self.base
                h = h.view(len(h), c, s, s)  # (B, 2w, s, s)
        out = self.out(h).flatten(1)
        if self.value_max is not None:  # images: in [0, value_max] like the data
            out = torch.sigmoid(out) * self.value_max
        return out


class Discriminator(nn.Module):
    """Samples (B, D) flattened (+ labels) -> logits (B / pack,): one per pack of m."""

    def __init__(self, params: GANParams, info: DataInfo, conv: bool) -> None:
        super().__init__()
        self.pack = params.pack
        self.n_classes = info.n_classes if params.conditional else None
        k = self.n_classes or 0
        self.conv = conv
        self.shape = info.input_shape
        if conv:
            c, _, side = _conv_base(info)  # type: ignore[misc]
            self.image = (c, side, side)
            w = params.conv_width
            self.net = nn.Sequential(
                nn.Conv2d(self.pack * (c + k), w, 4, 2, 1),  # side -> side/2
                nn.LeakyReLU(0.2),
                nn.Conv2d(w, 2 * w, 4, 2, 1),  # -> side/4
                nn.LeakyReLU(0.2),
                nn.Flatten(),
                nn.Linear(2 * w * (side // 4) ** 2, 1),
            )
        else:
            layers: list[nn.Module] = []
            width = self.pack * (math.prod(info.input_shape) + k)
            for h in params.hidden_d:
                layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
                width = h
            self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        b = len(x) // self.pack * self.pack  # a trailing incomplete pack is left out
        x = x[:b]
        if self.conv:
            x = x.view(b, *self.image)
            if self.n_classes is not None:
                onehot = F.one_hot(y[:b], self.n_classes).to(x.dtype)  # type: ignore[index]
                x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
            x = x.reshape(b // self.pack, -1, *x.shape[2:])  # packs along channels
        else:
            if self.n_classes is not None:
                x = torch.cat([x, F.one_hot(y[:b], self.n_classes).to(x.dtype)], 1)  # type: ignore[index]
            x = x.reshape(b // self.pack, -1)  # packs side by side
        return self.net(x).squeeze(-1)


class GAN(nn.Module):
    drs_max_logit: Tensor  # with params.drs only: M (0-d), NaN until ``calibrate_drs``

    def __init__(self, params: GANParams, info: DataInfo) -> None:
        super().__init__()
        conv = params.architecture == "conv" or (
            params.architecture == "auto" and _conv_base(info) is not None
        )
        if conv and _conv_base(info) is None:
            raise ValueError(
                f"conv nets need square images with a side divisible by 4 ({info.name})"
            )
        self.latent_dim = params.latent_dim
        self.conditional = params.conditional
        self.n_classes = info.n_classes
        self.input_shape = info.input_shape
        self.g = Generator(params, info, conv)
        self.d = Discriminator(params, info, conv)
        self.drs = params.drs
        if params.drs:  # only then: the state_dicts of GANs without DRS keep their keys
            self.register_buffer("drs_max_logit", torch.tensor(math.nan))


def build(params: GANParams, info: DataInfo) -> GAN:
    if params.conditional and not info.n_classes:
        raise ValueError(f"a conditional GAN needs labelled data; {info.name} has none")
    return GAN(params, info)


# --- losses (all from logits; means over the batch) ----------------------------------------


def d_loss_bce(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """−E log D(x) − E log(1 − D(G(z))), real target 1 − α (one-sided smoothing)."""
    real_target = torch.full_like(real, 1.0 - smoothing)
    return F.binary_cross_entropy_with_logits(
        real, real_target
    ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))


def minimax_g_loss(fake: Tensor) -> Tensor:
    """E log(1 − D(G(z))) = −E softplus(l): saturates (gradient −σ(l) → 0) as l → −∞."""
    return -F.softplus(fake).mean()


def non_saturating_g_loss(fake: Tensor) -> Tensor:
    """−E log D(G(z)) = E softplus(−l)."""
    return F.softplus(-fake).mean()


def max_likelihood_g_loss(fake: Tensor, cap: float = ML_LOGIT_CAP) -> Tensor:
    """J_G = −½ E exp(σ⁻¹(D(G(z)))) = −½ E exp(l), stable for any logit.

    Written as −½ E[w · (1 + l − sg(l))] with w = sg(exp(min(l, cap))) (sg: stop-gradient):
    its value is −½ E w and its gradient in each l_i is −½ w_i / B, both exactly J_G's
    for l ≤ cap. Above the cap the weight stays exp(cap) instead of overflowing to inf
    (float32 does at l ≈ 88.7), and, unlike ``exp(l.clamp(max=cap))``, the gradient does
    not vanish there.
    """
    w = torch.exp(fake.detach().clamp(max=cap))
    return -0.5 * (w * (1.0 + fake - fake.detach())).mean()


def wasserstein_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """The critic minimises E f(G(z)) − E f(x) (maximises the W1 estimate)."""
    return fake.mean() - real.mean()


def wasserstein_g_loss(fake: Tensor) -> Tensor:
    return -fake.mean()


def gradient_penalty(
    critic: nn.Module, real: Tensor, fake: Tensor, eps: Tensor, y: Tensor | None = None
) -> Tensor:
    """Gulrajani et al. 2017, eq. 3: E (‖∇_x̂ f(x̂)‖₂ − 1)², x̂ = ε x + (1 − ε) x̃.

    real, fake (B, D); eps (B, 1). The norm is per critic input: per pack of m samples.
    """
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = critic(x_hat, y)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    grad = grad[: len(out) * (len(grad) // max(len(out), 1))].reshape(len(out), -1)
    return (grad.norm(2, dim=1) - 1).pow(2).mean()


def r1_penalty(real_logits: Tensor, x: Tensor) -> Tensor:
    """Mescheder et al. 2018, eq. 9 without γ/2: E ‖∇ D‖² over D's real inputs, from the
    logits (one per input: per pack of m samples) and the batch x they were computed from,
    x requiring grad. A pack's squared gradient norm is the sum over its members'."""
    (grad,) = torch.autograd.grad(real_logits.sum(), x, create_graph=True)
    return grad.pow(2).sum() / max(len(real_logits), 1)


G_LOSSES = {
    "minimax": minimax_g_loss,
    "non_saturating": non_saturating_g_loss,
    "max_likelihood": max_likelihood_g_loss,
    "wasserstein": wasserstein_g_loss,
}


# --- training ------------------------------------------------------------------------------


def optimizers(
    module: GAN, params: GANParams, ctx: Context
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """(G's, D's): the job's optimizer, or the recipe of each loss's paper at ``lr``."""
    if params.optimizer == "job":
        return ctx.make_optimizer(module.g.parameters()), ctx.make_optimizer(module.d.parameters())
    lr = params.lr
    if params.loss == "wasserstein" and params.wasserstein_constraint == "clip":
        return RMSProp(module.g.parameters(), lr), RMSProp(module.d.parameters(), lr)
    b2 = 0.9 if params.loss == "wasserstein" else 0.999  # WGAN-GP: β = (0.5, 0.9); DCGAN
    return Adam(module.g.parameters(), lr, 0.5, b2), Adam(module.d.parameters(), lr, 0.5, b2)


class Trainer:
    """One D step and one G step on a batch, with the loss of ``params``."""

    def __init__(self, module: GAN, params: GANParams, ctx: Context) -> None:
        self.m, self.p, self.ctx = module, params, ctx
        self.opt_g, self.opt_d = optimizers(module, params, ctx)

    def set_lr_factor(self, factor: float) -> None:
        """Scale both learning rates to ``factor`` × their initial value."""
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor

    def noise(self, n: int, device: torch.device) -> Tensor:
        return torch.randn(n, self.m.latent_dim, generator=self.ctx.generator).to(device)

    def fake_labels(self, y: Tensor | None) -> Tensor | None:
        return y  # cGAN: fakes of the batch's own labels, so each pack mixes classes alike

    def d_step(self, x: Tensor, y: Tensor | None, step: int) -> float:
        m, p = self.m, self.p
        with torch.no_grad():
            fake = m.g(self.noise(len(x), x.device), self.fake_labels(y))
        if p.r1 > 0:
            x = x.detach().requires_grad_(True)
        real_l, fake_l = m.d(x, y), m.d(fake, y)
        if p.loss == "wasserstein":
            loss = wasserstein_d_loss(real_l, fake_l)
            if p.wasserstein_constraint == "gp":
                eps = torch.rand(len(x), 1, generator=self.ctx.generator).to(x.device)
                loss = loss + p.gp_weight * gradient_penalty(m.d, x, fake, eps, y)
        else:
            loss = d_loss_bce(real_l, fake_l, p.label_smoothing)
        if p.r1 > 0:
            loss = loss + p.r1 / 2 * r1_penalty(real_l, x)
        if not bool(torch.isfinite(loss)):
            raise Diverged(step + 1)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        if p.loss == "wasserstein" and p.wasserstein_constraint == "clip":
            with torch.no_grad():
                for w in m.d.parameters():
                    w.clamp_(-p.clip, p.clip)
        return float(loss.detach())

    def g_step(self, x: Tensor, y: Tensor | None, step: int) -> tuple[float, float]:
        """-> (G loss, ‖∇_θG loss‖₂ over all G parameters)."""
        m = self.m
        fake = m.g(self.noise(len(x), x.device), self.fake_labels(y))
        loss = G_LOSSES[self.p.loss](m.d(fake, y))
        if not bool(torch.isfinite(loss)):
            raise Diverged(step + 1)
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.sqrt(sum(q.grad.pow(2).sum() for q in m.g.parameters() if q.grad is not None))  # type: ignore[arg-type]
        self.opt_g.step()
        return float(loss.detach()), float(norm)


def _state(module: GAN, tr: Trainer, epoch: int, step: int) -> dict[str, Any]:
    import copy

    return copy.deepcopy(
        {
            "model": module.state_dict(),
            "optimizer": tr.opt_g.state_dict(),
            "optimizer_d": tr.opt_d.state_dict(),
            "epoch": epoch,
            "step": step,
        }
    )


def _batch_count(n: int, batch_size: int) -> int:
    """How many minibatches ``models.layers.minibatches`` cuts n examples into."""
    count = math.ceil(n / batch_size)
    return count - 1 if count > 1 and n % batch_size == 1 else count


def drs_calibrated(module: GAN) -> bool:
    """Whether ``sample`` uses DRS: the GAN was built with ``drs`` and M is set."""
    return module.drs and bool(torch.isfinite(module.drs_max_logit))


def calibrate_drs(
    module: GAN, x: Tensor, y: Tensor | None, params: GANParams, ctx: Context, step: int = 0
) -> Tensor | None:
    """DRS's two preparations (Azadi et al. 2019, §3): fine-tune D for ``drs_steps`` with
    G fixed, then set M to the ``drs_quantile`` of the logits of ``DRS_BURN_IN`` proposals.

    D is trained towards the optimal D of the *final* G, on which the acceptance rule
    rests: plain ``d_loss_bce`` (no smoothing, no R1, the optimum being the density ratio),
    a fresh Adam(lr, β = (0.5, 0.999)), random minibatches of the training split ``x``
    (labels ``y`` for a cGAN, whose fakes get the batch's labels) and fakes from G in eval
    mode, exactly as the sampler draws them. The burn-in is seeded (``DRS_BURN_IN_SEED``)
    apart from training's RNG, with labels drawn uniformly for a cGAN. ``step`` (the
    generator steps) names a divergence. Returns the burn-in logits (for
    ``drs_metrics``), or None, M left NaN, when ``ctx`` asks to stop: the caller then
    returns without a checkpoint, so a resume calibrates again.
    """
    opt = Adam(module.d.parameters(), params.lr, 0.5, 0.999)
    module.g.eval()
    module.d.train()
    done = 0
    while done < params.drs_steps:
        for idx in minibatches(len(x), ctx.batch_size, ctx.generator):
            if done >= params.drs_steps:
                break
            if ctx.should_stop():
                return None
            xb, yb = x[idx], None if y is None else y[idx]
            with torch.no_grad():
                z = torch.randn(len(idx), module.latent_dim, generator=ctx.generator)
                fake = module.g(z.to(x.device), yb)
            loss = d_loss_bce(module.d(xb, yb), module.d(fake, yb))
            if not bool(torch.isfinite(loss)):
                raise Diverged(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
    module.eval()
    with torch.no_grad():
        logits = drs_burn_in_logits(module)
        module.drs_max_logit.fill_(float(torch.quantile(logits, params.drs_quantile)))
    return logits


@torch.no_grad()
def drs_burn_in_logits(module: GAN) -> Tensor:
    """D's logits (``DRS_BURN_IN``,) of the burn-in proposals, G and D in eval mode."""
    module.eval()
    gen = torch.Generator().manual_seed(DRS_BURN_IN_SEED)
    z = torch.randn(DRS_BURN_IN, module.latent_dim, generator=gen)
    y = torch.randint(module.n_classes or 1, (DRS_BURN_IN,), generator=gen)
    dev = next(module.parameters()).device
    out = []
    for zc, yc in zip(z.split(DRS_CHUNK), y.split(DRS_CHUNK), strict=True):
        labels = yc.to(dev) if module.conditional else None
        out.append(module.d(module.g(zc.to(dev), labels), labels).float().cpu())
    return torch.cat(out)


def _evaluate(module: GAN, data: Dataset, params: GANParams) -> dict[str, float]:
    """``gan_metrics.evaluate`` with this objective's unsmoothed, unpenalised D loss."""
    wasserstein = params.loss == "wasserstein"
    d_loss = wasserstein_d_loss if wasserstein else d_loss_bce
    return gan_metrics.evaluate(module, data, wasserstein=wasserstein, d_loss=d_loss)


def _drs_metrics(module: GAN, info: DataInfo, logits: Tensor) -> dict[str, float]:
    return gan_metrics.drs_metrics(module, info, logits, partial(drs_sample, module))


def fit(module: nn.Module, data: Dataset, params: GANParams, ctx: Context) -> None:
    """Train G and D; with ``drs``, calibrate (``calibrate_drs``) at the end, before the
    last epoch's metrics and checkpoint, so that checkpoint holds the fine-tuned D and M.

    Training more (a resume that extends the run) sets M back to NaN, and the new end
    calibrates again. A resume from a checkpoint already at the end but not calibrated
    (the loop then does not run; no checkpoint of this function is such, since a stop
    during calibration offers none) calibrates after the loop and offers a checkpoint at
    that same step: an in-memory context keeps it, but the service's writer skips an
    offer not newer than the step it resumed from.
    """
    assert isinstance(module, GAN)
    module.to(ctx.device)
    x = data.x_train.flatten(1).to(ctx.device)
    y = data.y_train.to(ctx.device) if params.conditional else None
    tr = Trainer(module, params, ctx)
    epoch, step = 0, 0
    if ctx.resume is not None:
        module.load_state_dict(ctx.resume["model"])
        tr.opt_g.load_state_dict(ctx.resume["optimizer"])
        tr.opt_d.load_state_dict(ctx.resume["optimizer_d"])
        epoch, step = int(ctx.resume["epoch"]), int(ctx.resume["step"])
    k = params.n_critic()
    per_epoch = math.ceil(_batch_count(len(x), ctx.batch_size) / k)  # generator steps
    total = ctx.steps if ctx.steps is not None else (ctx.epochs or 0) * per_epoch
    while (epoch < ctx.epochs) if ctx.epochs is not None else (step < (ctx.steps or 0)):
        epoch += 1
        module.train()
        if params.drs:  # G moves on: the D and M of an earlier calibration no longer fit it
            module.drs_max_logit.fill_(math.nan)
        # a batch smaller than one pack would give D nothing to judge
        batches = [
            b for b in minibatches(len(x), ctx.batch_size, ctx.generator) if len(b) >= params.pack
        ]
        d_losses: list[float] = []
        g_losses: list[tuple[float, float]] = []  # (loss, gradient norm)
        for start in range(0, len(batches), k):
            if ctx.steps is not None and step >= ctx.steps:
                break
            if ctx.should_stop():
                if g_losses and ctx.steps is not None:
                    ctx.checkpoint(step, _state(module, tr, epoch, step))
                return
            if params.lr_decay == "linear":
                tr.set_lr_factor(1.0 - step / max(total, 1))
            group = batches[start : start + k]
            d_losses += [tr.d_step(x[i], None if y is None else y[i], step) for i in group]
            g_losses.append(tr.g_step(x[group[-1]], None if y is None else y[group[-1]], step))
            step += 1
        count = epoch if ctx.epochs is not None else step
        finished = epoch >= ctx.epochs if ctx.epochs is not None else step >= (ctx.steps or 0)
        drs: dict[str, float] = {}
        if finished and params.drs and not drs_calibrated(module):
            logits = calibrate_drs(module, x, y, params, ctx, step)
            if logits is None:
                return  # no checkpoint: the resume redoes this last epoch, then calibrates
            drs = _drs_metrics(module, data.info, logits)
        module.eval()
        d_loss = sum(d_losses) / len(d_losses)
        metrics = {
            "train_loss": d_loss,
            "d_loss": d_loss,
            "g_loss": sum(g for g, _ in g_losses) / len(g_losses),
            "g_grad_norm": sum(n for _, n in g_losses) / len(g_losses),
            **_evaluate(module, data, params),
            **drs,
        }
        ctx.log(count, **metrics)
        ctx.progress(count, ctx.epochs if ctx.epochs is not None else total)
        ctx.checkpoint(count, _state(module, tr, epoch, step), best=True)
    if params.drs and not drs_calibrated(module):  # resumed at the end, uncalibrated
        logits = calibrate_drs(module, x, y, params, ctx, step)
        if logits is None:
            return
        count = epoch if ctx.epochs is not None else step
        ctx.log(count, **_drs_metrics(module, data.info, logits))
        ctx.checkpoint(count, _state(module, tr, epoch, step), best=True)


# --- inference -----------------------------------------------------------------------------


def _labels(module: GAN, labels: Tensor | None, n: int, field: str) -> Tensor | None:
    if not module.conditional:
        if labels is not None:
            raise OptionError(field, "this GAN is unconditional: it takes no label")
        return None
    if labels is None:
        raise OptionError(field, "this conditional GAN needs a label")
    return labels.to(torch.int64).expand(n)


@torch.no_grad()
def decode(module: nn.Module, z: Tensor, labels: Tensor | None) -> Tensor:
    """Latents (n, latent_dim) -> samples (n, *input_shape), BatchNorm in eval mode."""
    assert isinstance(module, GAN)
    module.eval()
    dev = next(module.parameters()).device
    y = _labels(module, labels, len(z), "label")
    out = module.g(z.to(dev).float(), None if y is None else y.to(dev))
    return out.view(len(z), *module.input_shape)


@torch.no_grad()
def sample(module: nn.Module, opts: SampleOptions) -> Tensor:
    """``n`` samples from ``seed``: by DRS (``drs_sample``) once the GAN is calibrated,
    else G's own (``sample_plain``)."""
    assert isinstance(module, GAN)
    if drs_calibrated(module):
        return drs_sample(module, opts)
    return sample_plain(module, opts)


@torch.no_grad()
def sample_plain(module: nn.Module, opts: SampleOptions) -> Tensor:
    """``n`` samples of G from ``seed``, DRS or not: z ~ N(0, temperature² I); a conditional
    GAN without a label draws labels uniformly from the same seed. Sample i depends on
    (seed, i) only."""
    assert isinstance(module, GAN)
    gen = opts.generator()
    z = torch.randn(opts.n, module.latent_dim, generator=gen) * opts.temperature
    labels: Tensor | None = None
    if opts.label is not None:
        labels = torch.tensor([opts.label])
    elif module.conditional:
        labels = torch.randint(module.n_classes or 1, (opts.n,), generator=gen)
    return decode(module, z, labels)


@torch.no_grad()
def drs_sample(module: GAN, opts: SampleOptions) -> Tensor:
    """``n`` samples by discriminator rejection sampling from ``seed`` (module calibrated).

    Proposals come in chunks of ``DRS_CHUNK`` from one seeded stream, each chunk
    z ~ N(0, temperature² I), its labels (``label``, or uniform for a cGAN without one)
    and u ~ U(0, 1); x = G(z) is kept when log u < l(x) − M. The first n kept are
    returned, so they do not depend on n. More than max(200 n, 65,536) proposals (an
    acceptance below 1/200 or so), or than ``opts.max_rows`` (at least one chunk), raise
    ``OptionError`` on ``n``.
    """
    module.eval()
    dev = next(module.parameters()).device
    gen = opts.generator()
    m = float(module.drs_max_logit)
    cap = max(DRS_PROPOSALS_PER_SAMPLE * opts.n, DRS_MIN_PROPOSALS)
    if opts.max_rows is not None and opts.max_rows < cap:  # the request's bound on work
        cap = max(opts.max_rows, DRS_CHUNK)
    fixed = None if opts.label is None else torch.tensor([opts.label])
    kept: list[Tensor] = []
    accepted = proposed = 0
    while accepted < opts.n:
        if proposed >= cap:
            raise OptionError(
                "n",
                f"discriminator rejection sampling kept {accepted} of {proposed:,} proposals "
                f"(acceptance {accepted / proposed:.3%}), fewer than n = {opts.n} within its "
                f"cap of {cap:,} proposals (max(200·n, {DRS_MIN_PROPOSALS:,}), at most the "
                "request's bound on work): D rejects nearly all of G's samples, or n asks "
                "for more work than one request may do",
            )
        z = torch.randn(DRS_CHUNK, module.latent_dim, generator=gen) * opts.temperature
        labels = fixed
        if fixed is None and module.conditional:
            labels = torch.randint(module.n_classes or 1, (DRS_CHUNK,), generator=gen)
        y = _labels(module, labels, DRS_CHUNK, "label")
        y = None if y is None else y.to(dev)
        x = module.g(z.to(dev), y)
        logits = module.d(x, y).float().cpu()
        u = torch.rand(DRS_CHUNK, generator=gen)
        keep = torch.log(u) < logits - m
        kept.append(x[keep.to(dev)])
        accepted += int(keep.sum())
        proposed += DRS_CHUNK
    return torch.cat(kept)[: opts.n].view(opts.n, *module.input_shape)


FAMILY = Family(
    name="gan",
    description="GAN: minimax, non-saturating, max-likelihood or Wasserstein (clip/gp) losses; "
    "cGAN with conditional BatchNorm, one-sided label smoothing, PacGAN packing; "
    "discriminator rejection sampling",
    params=GANParams,
    datasets=GAN_DATASETS,
    capabilities={
        Capability.SAMPLE: sample,
        Capability.DECODE: Decoder(decode, latent_dim=lambda p: p.latent_dim),
        Capability.INTERPOLATE: latent_path,
    },
    build=build,
    fit=fit,
    default_epochs=100,
    default_batch_size=256,
    min_batch_size=lambda p: max(p.pack, 2 if p.batchnorm else 1),
)
