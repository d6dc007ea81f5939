"""The ``flow`` family's training (maximum likelihood, or the reverse KL of Rezende &
Mohamed 2015 for a known target), evaluation (NLL, bits/dim of dequantised images as
in Dinh et al. 2017; the reverse KL and log Z estimates), inference (sampling at a
temperature; exact or importance-weighted log p) and its ``FAMILY`` record.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.data import DataInfo, Dataset
from models.densities import target_log_density, target_stats
from models.family import Capability, Context, Family, LikelihoodKind, LikelihoodReport
from models.flow.flow import (
    Flow,
    FlowParams,
    Standardize,
    build,
    device_of,
    discrete_log_prob,
    nll_loss,
    reverse_kl_loss,
)
from models.generative import LogProb, OptionError, SampleOptions, bits_per_dim, level_width
from models.loop import final_test, train_epochs

EVAL_SAMPLES = 2000  # samples behind the reverse-KL and variance metrics
DATASETS = frozenset({"moons", "rings8", "grid25", "checkerboard", "digits", "mnist5k"})


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
        final_test(module, ctx, lambda: evaluate(module, data, params, "test"))


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


def test_nll_kind(info: DataInfo, params: FlowParams) -> LikelihoodKind:
    """``test_nll`` is the exact density on continuous data; on discrete pixels a
    dequantisation bound on log P (one draw of the noise, ``evaluate``)."""
    return "exact" if level_width(info) is None else "bound"


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
    likelihood=LikelihoodReport("test_nll", "test_bits_per_dim", test_nll_kind),
)
