"""GAN diagnostics, logged after every epoch (see ``models.gan``; the mode counts of
PacGAN, Lin et al. 2018, and VEEGAN, Srivastava et al. 2017).

- ``d_real``, ``d_fake``: mean D(x) = σ(l) on the validation split and on generated
  samples (the critic's mean value f for ``wasserstein``); ``val_loss``: D's loss on them
  (no smoothing, no penalty).
- ``js_from_d`` (BCE losses): (log 4 − val D loss) / 2. For the optimal D, −(D loss) =
  2 JS(p_data ‖ p_G) − log 4 (Goodfellow et al. 2014, Thm. 1); for the trained D it is a
  lower estimate, and it is 0 once D cannot tell the two apart.
- 2-D mixtures with known modes (``rings8``, ``grid25``), the PacGAN/VEEGAN protocol on
  ``MODE_SAMPLES`` = 2,500 samples: a sample is *high quality* when it lies within 3σ of
  its nearest mode centre (σ the mixture's per-coordinate std); ``modes``: the number of
  modes nearest to at least one high-quality sample (VEEGAN, Srivastava et al. 2017,
  §5.1); ``modes_strict``: modes holding at least a fifth of their expected share
  (2,500 / K / 5 samples), a stricter count some later papers use; ``hq``: the fraction of
  high-quality samples; ``js_modes``: the Jensen–Shannon divergence (nats) between the
  distributions over K + 1 cells (the 3σ disc of each mode, and the rest of the plane) of
  the data, computed exactly from the known density (each disc holds
  (1 − e^{−9/2}) / K for an isotropic 2-D Gaussian), and of the samples, estimated by
  counting. By the data-processing inequality it estimates a lower bound on
  JS(p_data ‖ p_G).
- With ``drs``, once at the end of training, after ``models.gan.drs.calibrate_drs``:
  ``drs_max_logit`` (M), ``drs_acceptance`` (the mean of min(1, exp(l − M)) over the
  burn-in proposals that set M: the expected fraction of proposals kept) and, for the 2-D
  mixtures, ``drs_modes``, ``drs_modes_strict``, ``drs_hq`` and ``drs_js_modes``: the
  numbers above on ``MODE_SAMPLES`` DRS samples from ``EVAL_SEED``, beside the plain
  samples' ``modes``, ``hq``, ... of the same step. (That step's ``d_real``, ``d_fake``,
  ``val_loss`` and ``js_from_d`` are those of the fine-tuned D.)
- Images: a small classifier (the ``mlp`` family's network and training: one hidden
  layer of 128 ReLU units, 8 epochs; built here from ``models.layers``, trained once per
  process on the same dataset's training split) labels ``IMAGE_SAMPLES`` samples:
  ``classes_covered`` (classes predicted at least once), ``class_kl`` (KL of the
  predicted class histogram from uniform, nats), ``class_frac_<c>`` (the histogram) and
  ``classifier_val_accuracy``.

The dependency is one-way: ``models.gan.family`` imports this module, and this module
imports nothing of the package. What the metrics need of a GAN is the ``GANModule``
protocol; its discriminator loss and its DRS sampler come in as arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.context import LocalContext
from models.data import DataInfo, Dataset, load
from models.data.builtin import GRID25_STD, RINGS8_STD, mode_centres
from models.generative import OptionError, SampleOptions
from models.layers import Normalizer, mlp_trunk
from models.loop import train_epochs

MODE_SAMPLES = 2_500
IMAGE_SAMPLES = 1_000
MIXTURE_STD = {"rings8": RINGS8_STD, "grid25": GRID25_STD}
EVAL_SEED = 12345  # the same latents at every evaluation, independent of training's RNG
CLASSIFIER_WIDTH = 128
CLASSIFIER_EPOCHS = 8

DLoss = Callable[[Tensor, Tensor], Tensor]  # (real logits, fake logits) -> D's loss


class GANModule(Protocol):
    """What the metrics read of a ``models.gan.nets.GAN``."""

    @property
    def g(self) -> Callable[..., Tensor]: ...  # (z, labels or None) -> samples (B, D)
    @property
    def d(self) -> Callable[..., Tensor]: ...  # (samples, labels or None) -> logits
    @property
    def latent_dim(self) -> int: ...
    @property
    def n_classes(self) -> int | None: ...
    @property
    def conditional(self) -> bool: ...
    @property
    def drs_max_logit(self) -> Tensor: ...
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


def mode_metrics(samples: np.ndarray, modes: np.ndarray, std: float) -> dict[str, float]:
    """The PacGAN/VEEGAN numbers for 2-D samples (N, 2) against mode centres (K, 2)."""
    dist = np.linalg.norm(samples[:, None, :] - modes[None], axis=-1)  # (N, K)
    dist = np.where(np.isfinite(dist), dist, np.inf)
    nearest, d = dist.argmin(1), dist.min(1)
    good = d <= 3 * std
    k = len(modes)
    counts = np.bincount(nearest[good], minlength=k)
    strict = len(samples) / k / 5
    return {
        "modes": float((counts > 0).sum()),
        "modes_strict": float((counts >= strict).sum()),
        "hq": float(good.mean()),
        "js_modes": js_cells(counts, len(samples), k),
    }


def js_cells(counts: np.ndarray, n: int, k: int) -> float:
    """JS (nats) between the data's and the samples' mass on K 3σ-discs + the rest."""
    inside = 1 - math.exp(-4.5)  # P(‖ε‖ ≤ 3σ), ε ~ N(0, σ² I₂): Rayleigh tail e^{−r²/2σ²}
    p = np.append(np.full(k, inside / k), 1 - inside)
    q = np.append(counts, n - counts.sum()) / n
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log(a[nz] / b[nz])).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


class Classifier(nn.Module):
    """The ``mlp`` family's network for classification (same layers and state_dict keys):
    raw inputs (B, *input_shape) -> logits (B, C)."""

    def __init__(self, info: DataInfo) -> None:
        super().__init__()
        in_dim = math.prod(info.input_shape)
        self.normalizer = Normalizer(in_dim, info.target_dim)
        self.trunk = mlp_trunk(in_dim, [CLASSIFIER_WIDTH], "relu")
        self.head = nn.Linear(CLASSIFIER_WIDTH, info.n_classes or 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(self.normalizer.x(x.flatten(1))))


def _fit_classifier(module: Classifier, data: Dataset, ctx: LocalContext) -> None:
    """Cross-entropy training as the ``mlp`` family's ``fit`` does it."""
    module.to(ctx.device)
    x, y = data.x_train.to(ctx.device), data.y_train.to(ctx.device)
    x_val, y_val = data.x_val.to(ctx.device), data.y_val.to(ctx.device)
    module.normalizer.fit(x.flatten(1))
    opt = ctx.make_optimizer(module.parameters())

    def val_metrics() -> dict[str, float]:
        out = module(x_val)
        return {
            "val_loss": float(F.cross_entropy(out, y_val)),
            "val_accuracy": float((out.argmax(-1) == y_val).float().mean()),
        }

    train_epochs(
        module, opt, x, y, ctx,
        loss_fn=lambda xb, yb: F.cross_entropy(module(xb), yb),
        evaluate=val_metrics,
    )  # fmt: skip


@lru_cache(maxsize=4)
def image_classifier(name: str) -> tuple[torch.nn.Module, float]:
    """A ``Classifier`` trained briefly on the dataset's training split (cached per
    process); its own RNG, so a GAN's training (and its exact resume) is not disturbed."""
    data = load(name)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():  # callers run no_grad
        module = Classifier(data.info)
        ctx = LocalContext(epochs=CLASSIFIER_EPOCHS, batch_size=64, seed=0)
        _fit_classifier(module, data, ctx)
    module.eval()
    with torch.no_grad():
        acc = float((module(data.x_val).argmax(-1) == data.y_val).float().mean())
    return module, acc


def _eval_latents(module: GANModule, n: int, dev: torch.device) -> tuple[Tensor, Tensor | None]:
    gen = torch.Generator().manual_seed(EVAL_SEED)
    z = torch.randn(n, module.latent_dim, generator=gen).to(dev)
    y = torch.randint(module.n_classes or 1, (n,), generator=gen).to(dev)
    return z, y if module.conditional else None


@torch.no_grad()
def evaluate(
    module: GANModule, data: Dataset, *, wasserstein: bool, d_loss: DLoss
) -> dict[str, float]:
    """Every diagnostic above for the module in eval mode; ``d_loss`` is D's loss of the
    GAN's objective without smoothing or penalty (``wasserstein``: the critic's)."""
    dev = next(module.parameters()).device
    info = data.info
    x_val = data.x_val.flatten(1).to(dev)
    y_val = data.y_val.to(dev) if module.conditional else None
    z, _ = _eval_latents(module, len(x_val), dev)
    fake = module.g(z, y_val)
    real_l, fake_l = module.d(x_val, y_val), module.d(fake, y_val)
    out: dict[str, float] = {}
    if wasserstein:
        out["val_loss"] = float(d_loss(real_l, fake_l))
        out["d_real"], out["d_fake"] = float(real_l.mean()), float(fake_l.mean())
    else:
        loss = float(d_loss(real_l, fake_l))
        out["val_loss"] = loss
        out["d_real"] = float(torch.sigmoid(real_l).mean())
        out["d_fake"] = float(torch.sigmoid(fake_l).mean())
        out["js_from_d"] = max(0.0, (math.log(4) - loss) / 2)
    modes = mode_centres(info.name)
    if modes is not None and info.input_shape == (2,):
        z, y = _eval_latents(module, MODE_SAMPLES, dev)
        samples = module.g(z, y).cpu().double().numpy()
        out |= mode_metrics(samples, modes, MIXTURE_STD[info.name])
    elif info.image_shape is not None and info.n_classes:
        out |= class_metrics(module, info.name, info.n_classes, dev)
    return out


@torch.no_grad()
def drs_metrics(
    module: GANModule,
    info: DataInfo,
    logits: Tensor,
    drs_sample: Callable[[SampleOptions], Tensor],
) -> dict[str, float]:
    """The ``drs_*`` diagnostics above, for a module just calibrated on the burn-in
    ``logits`` that ``models.gan.drs.calibrate_drs`` returned; ``drs_sample`` draws from it
    (``models.gan.drs.drs_sample`` bound to the module)."""

    m = module.drs_max_logit.cpu()
    out = {
        "drs_max_logit": float(m),
        "drs_acceptance": float(torch.exp((logits - m).clamp(max=0.0)).mean()),
    }
    modes = mode_centres(info.name)
    if modes is not None and info.input_shape == (2,):
        try:
            x = drs_sample(SampleOptions(n=MODE_SAMPLES, seed=EVAL_SEED))
        except OptionError:  # fewer than about 1 in 200 kept: no sample set to score
            return out
        scores = mode_metrics(x.cpu().double().numpy(), modes, MIXTURE_STD[info.name])
        out |= {f"drs_{k}": v for k, v in scores.items()}
    return out


@torch.no_grad()
def class_metrics(
    module: GANModule, name: str, n_classes: int, dev: torch.device
) -> dict[str, float]:
    classifier, acc = image_classifier(name)
    z, y = _eval_latents(module, IMAGE_SAMPLES, dev)
    samples = module.g(z, y).cpu()
    pred = classifier(samples).argmax(-1)
    hist = torch.bincount(pred, minlength=n_classes).double() / len(pred)
    kl = float((hist * (hist.clamp_min(1e-12) * n_classes).log()).sum())
    out = {
        "classes_covered": float((hist > 0).sum()),
        "class_kl": kl,
        "classifier_val_accuracy": acc,
    }
    out |= {f"class_frac_{c}": float(hist[c]) for c in range(n_classes)}
    if y is not None:  # cGAN: how often the classifier agrees with the asked-for label
        out["label_accuracy"] = float((pred == y.cpu()).float().mean())
    return out
