"""The ``gan`` family's training loop (Goodfellow et al. 2014, Algorithm 1: k D steps,
then one G step), each loss's published optimizer (DCGAN's Adam β = (0.5, 0.999),
Radford et al. 2016; WGAN's RMSProp, Arjovsky et al. 2017; WGAN-GP's Adam β = (0.5,
0.9), Gulrajani et al. 2017), inference (G's samples, or DRS's, Azadi et al. 2019) and
the ``FAMILY`` record; see ``models.gan``.
"""

from __future__ import annotations

import copy
import math
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from models.data import DataInfo, Dataset
from models.family import Capability, Context, Decoder, Diverged, Family
from models.gan import metrics as gan_metrics
from models.gan.drs import calibrate_drs, drs_calibrated, drs_sample
from models.gan.losses import (
    G_LOSSES,
    d_loss_bce,
    gradient_penalty,
    r1_penalty,
    wasserstein_d_loss,
)
from models.gan.nets import GAN, GANParams, build, labels_for
from models.generative import SampleOptions, latent_path
from models.loop import Budget, batch_count, minibatches
from models.optim import Adam, RMSProp

GAN_DATASETS = frozenset({"rings8", "grid25", "moons", "digits", "mnist5k"})


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
        self.module, self.params, self.ctx = module, params, ctx
        self.opt_g, self.opt_d = optimizers(module, params, ctx)

    def set_lr_factor(self, factor: float) -> None:
        """Scale both learning rates to ``factor`` × their initial value."""
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor

    def noise(self, n: int, device: torch.device) -> Tensor:
        return torch.randn(n, self.module.latent_dim, generator=self.ctx.generator).to(device)

    def fake_labels(self, y: Tensor | None) -> Tensor | None:
        return y  # cGAN: fakes of the batch's own labels, so each pack mixes classes alike

    def d_step(self, x: Tensor, y: Tensor | None, step: int) -> float:
        gan, p = self.module, self.params
        with torch.no_grad():
            fake = gan.g(self.noise(len(x), x.device), self.fake_labels(y))
        if p.r1 > 0:
            x = x.detach().requires_grad_(True)
        real_l, fake_l = gan.d(x, y), gan.d(fake, y)
        if p.loss == "wasserstein":
            loss = wasserstein_d_loss(real_l, fake_l)
            if p.wasserstein_constraint == "gp":
                eps = torch.rand(len(x), 1, generator=self.ctx.generator).to(x.device)
                loss = loss + p.gp_weight * gradient_penalty(gan.d, x, fake, eps, y)
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
                for w in gan.d.parameters():
                    w.clamp_(-p.clip, p.clip)
        return float(loss.detach())

    def g_step(self, x: Tensor, y: Tensor | None, step: int) -> tuple[float, float]:
        """-> (G loss, ‖∇_θG loss‖₂ over all G parameters)."""
        gan = self.module
        fake = gan.g(self.noise(len(x), x.device), self.fake_labels(y))
        loss = G_LOSSES[self.params.loss](gan.d(fake, y))
        if not bool(torch.isfinite(loss)):
            raise Diverged(step + 1)
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        grads = [q.grad for q in gan.g.parameters() if q.grad is not None]
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))  # type: ignore[arg-type]
        self.opt_g.step()
        return float(loss.detach()), float(norm)


def _state(module: GAN, tr: Trainer, epoch: int, step: int) -> dict[str, Any]:
    return copy.deepcopy(
        {
            "model": module.state_dict(),
            "optimizer": tr.opt_g.state_dict(),
            "optimizer_d": tr.opt_d.state_dict(),
            "epoch": epoch,
            "step": step,
        }
    )


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
    budget = Budget.of(ctx)
    per_epoch = math.ceil(batch_count(len(x), ctx.batch_size) / k)  # generator steps
    total = budget.total_steps(per_epoch)
    while not budget.finished(epoch, step):
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
            if not budget.steps_left(step):
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
        count = budget.count(epoch, step)
        finished = budget.finished(epoch, step)
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
        ctx.progress(count, budget.total)
        ctx.checkpoint(count, _state(module, tr, epoch, step), best=True)
    if params.drs and not drs_calibrated(module):  # resumed at the end, uncalibrated
        logits = calibrate_drs(module, x, y, params, ctx, step)
        if logits is None:
            return
        count = budget.count(epoch, step)
        ctx.log(count, **_drs_metrics(module, data.info, logits))
        ctx.checkpoint(count, _state(module, tr, epoch, step), best=True)


# --- inference -----------------------------------------------------------------------------


@torch.no_grad()
def decode(module: nn.Module, z: Tensor, labels: Tensor | None) -> Tensor:
    """Latents (n, latent_dim) -> samples (n, *input_shape), BatchNorm in eval mode."""
    assert isinstance(module, GAN)
    module.eval()
    dev = next(module.parameters()).device
    y = labels_for(module, labels, len(z), "label")
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
