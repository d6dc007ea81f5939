"""GAN diagnostics, logged after every epoch (see ``models.gan``).

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
- With ``drs``, once at the end of training, after ``models.gan.calibrate_drs``:
  ``drs_max_logit`` (M), ``drs_acceptance`` (the mean of min(1, exp(l − M)) over the
  burn-in proposals that set M: the expected fraction of proposals kept) and, for the 2-D
  mixtures, ``drs_modes``, ``drs_modes_strict``, ``drs_hq`` and ``drs_js_modes``: the
  numbers above on ``MODE_SAMPLES`` DRS samples from ``EVAL_SEED``, beside the plain
  samples' ``modes``, ``hq``, ... of the same step. (That step's ``d_real``, ``d_fake``,
  ``val_loss`` and ``js_from_d`` are those of the fine-tuned D.)
- Images: a small classifier (``mlp``, trained once per process on the same dataset's
  training split) labels ``IMAGE_SAMPLES`` samples: ``classes_covered`` (classes predicted
  at least once), ``class_kl`` (KL of the predicted class histogram from uniform, nats),
  ``class_frac_<c>`` (the histogram) and ``classifier_val_accuracy``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from models.data import DataInfo, Dataset, load
from models.data.builtin import GRID25_STD, RINGS8_STD, mode_centres

if TYPE_CHECKING:
    from models.gan import GAN, GANParams

MODE_SAMPLES = 2_500
IMAGE_SAMPLES = 1_000
MIXTURE_STD = {"rings8": RINGS8_STD, "grid25": GRID25_STD}
EVAL_SEED = 12345  # the same latents at every evaluation, independent of training's RNG


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


@lru_cache(maxsize=4)
def image_classifier(name: str) -> tuple[torch.nn.Module, float]:
    """An ``mlp`` trained briefly on the dataset's training split (cached per process);
    its own RNG, so a GAN's training (and its exact resume) is not disturbed."""
    from models.context import LocalContext
    from models.mlp import FAMILY as MLP

    data = load(name)
    params = MLP.params(hidden=[128])  # type: ignore[call-arg]
    with torch.random.fork_rng(devices=[]), torch.enable_grad():  # callers run no_grad
        module = MLP.build(params, data.info)
        MLP.fit(module, data, params, LocalContext(epochs=8, batch_size=64, seed=0))
    module.eval()
    with torch.no_grad():
        acc = float((module(data.x_val).argmax(-1) == data.y_val).float().mean())
    return module, acc


def _eval_latents(module: GAN, n: int, dev: torch.device) -> tuple[Tensor, Tensor | None]:
    gen = torch.Generator().manual_seed(EVAL_SEED)
    z = torch.randn(n, module.latent_dim, generator=gen).to(dev)
    y = torch.randint(module.n_classes or 1, (n,), generator=gen).to(dev)
    return z, y if module.conditional else None


@torch.no_grad()
def evaluate(module: GAN, data: Dataset, params: GANParams, ctx: Any) -> dict[str, float]:
    """Every diagnostic above for the module in eval mode."""
    from models.gan import d_loss_bce, wasserstein_d_loss

    dev = next(module.parameters()).device
    info = data.info
    x_val = data.x_val.flatten(1).to(dev)
    y_val = data.y_val.to(dev) if module.conditional else None
    z, _ = _eval_latents(module, len(x_val), dev)
    fake = module.g(z, y_val)
    real_l, fake_l = module.d(x_val, y_val), module.d(fake, y_val)
    out: dict[str, float] = {}
    if params.loss == "wasserstein":
        out["val_loss"] = float(wasserstein_d_loss(real_l, fake_l))
        out["d_real"], out["d_fake"] = float(real_l.mean()), float(fake_l.mean())
    else:
        loss = float(d_loss_bce(real_l, fake_l))
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
def drs_metrics(module: GAN, info: DataInfo, logits: Tensor) -> dict[str, float]:
    """The ``drs_*`` diagnostics above, for a module just calibrated on the burn-in
    ``logits`` that ``models.gan.calibrate_drs`` returned."""
    from models.gan import drs_sample
    from models.generative import OptionError, SampleOptions

    m = module.drs_max_logit.cpu()
    out = {
        "drs_max_logit": float(m),
        "drs_acceptance": float(torch.exp((logits - m).clamp(max=0.0)).mean()),
    }
    modes = mode_centres(info.name)
    if modes is not None and info.input_shape == (2,):
        try:
            x = drs_sample(module, SampleOptions(n=MODE_SAMPLES, seed=EVAL_SEED))
        except OptionError:  # fewer than about 1 in 200 kept: no sample set to score
            return out
        scores = mode_metrics(x.cpu().double().numpy(), modes, MIXTURE_STD[info.name])
        out |= {f"drs_{k}": v for k, v in scores.items()}
    return out


@torch.no_grad()
def class_metrics(module: GAN, name: str, n_classes: int, dev: torch.device) -> dict[str, float]:
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
