"""Discriminator rejection sampling (Azadi et al. 2019, "Discriminator Rejection
Sampling"), the GAN's ``drs`` option.

For the optimal D of a BCE loss, D*(x) = p_data / (p_data + p_G), so its logit is
l(x) = log p_data(x)/p_G(x). Keeping a proposal x ~ p_G with probability exp(l(x) − M),
M ≥ max_x l(x), leaves the kept samples distributed as p_G · p_data/p_G ∝ p_data,
whatever G missed or blurred (within G's support). The D trained beside G is not the
optimal D for the final G (it chased a moving G), so after training D is fine-tuned for
``drs_steps`` with G fixed (``calibrate_drs``: plain BCE, no smoothing, no R1). M is
then the ``drs_quantile`` of the logits of a burn-in of 10,000 proposals, and a proposal
with l > M is always kept (probability min(1, exp(l − M))).

With the quantile 1 (M the largest logit) this is exact rejection sampling, but one
over-confident logit sets M for every proposal, and D's logit is least reliable where
neither data nor fakes fall. Below 1 the kept samples follow ∝ min(p_G, p_data/r),
r = exp(M): p_data wherever G puts too much mass (the samples between the modes, which
DRS is for) and G's own density where the ratio passes r; the default 0.95 plays the
part of the paper's shift γ (which also trades exactness for acceptance). Why not 1:
docs/benchmarks.md, "Tuning history".

``GET /samples`` draws this way once M is set (``models.gan.family.sample``;
``sample_plain`` and ``decode`` stay plain); when fewer than 1 in 200 proposals are kept
it answers 422 rather than run unbounded. Needs a BCE loss (a Wasserstein critic is no
density ratio) and ``pack`` 1 (a packed D scores packs, not samples).
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.family import Context, Diverged
from models.gan.losses import d_loss_bce
from models.gan.nets import GAN, GANParams, labels_for
from models.generative import OptionError, SampleOptions
from models.loop import minibatches
from models.optim import Adam

DRS_BURN_IN = 10_000  # proposals whose logits' drs_quantile is M
DRS_BURN_IN_SEED = 0
DRS_CHUNK = 4_096  # proposals per draw: fixed, so the first n kept do not depend on n
DRS_MIN_PROPOSALS = 65_536  # the cap on proposals is max(200 n, this)
DRS_PROPOSALS_PER_SAMPLE = 200


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
        y = labels_for(module, labels, DRS_CHUNK, "label")
        y = None if y is None else y.to(dev)
        x = module.g(z.to(dev), y)
        logits = module.d(x, y).float().cpu()
        u = torch.rand(DRS_CHUNK, generator=gen)
        keep = torch.log(u) < logits - m
        kept.append(x[keep.to(dev)])
        accepted += int(keep.sum())
        proposed += DRS_CHUNK
    return torch.cat(kept)[: opts.n].view(opts.n, *module.input_shape)
