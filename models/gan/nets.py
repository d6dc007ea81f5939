"""The GAN's parameters and networks: a generator G (MLP, or DCGAN-style transposed
convolutions, Radford et al. 2016), a discriminator D (MLP or convolutions, PacGAN
packing, Lin et al. 2018) and conditional BatchNorm for a cGAN (Mirza & Osindero 2014;
de Vries et al. 2017). See ``models.gan``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from models.data import DataInfo
from models.family import Params
from models.generative import OptionError
from models.layers import Width

Loss = Literal["minimax", "non_saturating", "max_likelihood", "wasserstein"]


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


def labels_for(module: GAN, labels: Tensor | None, n: int, field: str) -> Tensor | None:
    """A conditional GAN's labels (n,) (one label expanded to n), None for an unconditional
    one; an ``OptionError`` on ``field`` when the labels do not fit the GAN."""
    if not module.conditional:
        if labels is not None:
            raise OptionError(field, "this GAN is unconditional: it takes no label")
        return None
    if labels is None:
        raise OptionError(field, "this conditional GAN needs a label")
    return labels.to(torch.int64).expand(n)
