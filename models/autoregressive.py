"""What every autoregressive density family shares (``nade``, ``made``, and the pixel
models to come): p(x) = Π_i p(x_i | x_<i) with exact log-likelihoods (the notes, §7.1).

- Conditionals: ``bernoulli`` for binary data (one logit per dimension; log P(x) is a
  probability, no dequantisation) or ``mog`` for real-valued data (RNADE, Uria et al.
  2013: per dimension a mixture of K Gaussians, 3K numbers: logits, means, log scales, on
  standardised values). ``resolve_likelihood`` picks one for ``auto`` and refuses a
  mismatch; ``conditional_log_prob`` scores, ``draw_conditional`` samples one dimension.
- The capabilities and the evaluation, written once over ``ExactDensity``: a module
  with ``info``, ``likelihood``, ``log_prob(x)`` and ``sample(n, temperature, gen)``.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.data import DataInfo, Dataset
from models.generative import LogProb, LogProbFn, OptionError, SampleFn, SampleOptions, bits_per_dim

Likelihood = Literal["bernoulli", "mog"]
LOG_SCALE_MIN = -7.0  # the smallest log scale of a mixture component (standardised units)


def resolve_likelihood(family: str, name: str, info: DataInfo) -> Likelihood:
    """The likelihood ``auto`` stands for, or a ValueError for one the data cannot take."""
    binary = info.levels == 2
    continuous = info.levels is None
    if name == "auto":
        if binary:
            return "bernoulli"
        if continuous:
            return "mog"
        raise ValueError(f"{family} models binary or real-valued data; {info.name} is neither")
    if name == "bernoulli" and not binary:
        raise ValueError(f"likelihood bernoulli needs binary data; {info.name} is not")
    if name == "mog" and not continuous:
        raise ValueError(f"likelihood mog needs real-valued data; {info.name} is discrete")
    return name  # type: ignore[return-value]


def outputs_per_dim(likelihood: Likelihood, components: int) -> int:
    """Numbers the network gives per dimension: 1 logit, or 3K mixture parameters."""
    return 1 if likelihood == "bernoulli" else 3 * components


def split_mixture(out: Tensor, components: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, 3K, ...) -> log weights, means, log scales (B, K, ...) each."""
    logits, mean, log_scale = out.unflatten(1, (3, components)).unbind(1)
    return logits.log_softmax(1), mean, log_scale.clamp_min(LOG_SCALE_MIN)


def conditional_log_prob(likelihood: Likelihood, out: Tensor, u: Tensor, components: int) -> Tensor:
    """Σ_i log p(u_i | u_<i) (B,) from the network's outputs ``out`` (B, k, D) at ``u``
    (B, D): binary values, or standardised real values."""
    if likelihood == "bernoulli":
        return -F.binary_cross_entropy_with_logits(out[:, 0], u, reduction="none").sum(1)
    log_w, mean, log_scale = split_mixture(out, components)
    z = (u[:, None] - mean) * torch.exp(-log_scale)
    log_n = -0.5 * z.pow(2) - log_scale - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(log_w + log_n, 1).sum(1)


def draw_conditional(
    likelihood: Likelihood,
    out: Tensor,
    components: int,
    temperature: float,
    gen: torch.Generator,
) -> Tensor:
    """One dimension's values (n,) from its conditional's outputs ``out`` (n, k), drawn
    on the generator's device and moved to ``out``'s: Bernoulli with logits / T, or a
    mixture component then a Gaussian with its scale × T."""
    n, dev = out.shape[0], out.device
    if likelihood == "bernoulli":
        p = torch.sigmoid(out[:, 0] / temperature)
        draw = torch.rand(n, generator=gen, device=gen.device).to(dev)
        return (draw < p).float()
    log_w, mean, log_scale = split_mixture(out, components)  # (n, K) each
    c = torch.multinomial(log_w.exp().cpu(), 1, generator=gen).to(dev)  # (n, 1)
    mu = mean.gather(1, c).squeeze(1)
    s = log_scale.gather(1, c).squeeze(1).exp() * temperature
    eps = torch.randn(n, generator=gen, device=gen.device).to(dev)
    return mu + s * eps


class ExactDensity(Protocol):
    """An autoregressive module as the shared capabilities see it."""

    info: DataInfo
    likelihood: Likelihood
    shift: Tensor  # on the module's device

    def log_prob(self, x: Tensor) -> Tensor: ...  # (B, D) data units -> (B,)
    def sample(self, n: int, temperature: float, gen: torch.Generator) -> Tensor: ...
    def eval(self) -> nn.Module: ...


def evaluate(module: ExactDensity, data: Dataset, split: str) -> dict[str, float]:
    """NLL on the split (nats per example); bits per dimension for binary images."""
    x = (data.x_val if split == "val" else data.x_test).to(module.shift.device).flatten(1)
    with torch.no_grad():
        log_p = torch.cat([module.log_prob(xb) for xb in x.split(512)])
    nll = float(-log_p.mean())
    out = {f"{split}_nll": nll, f"{split}_loss": nll}
    if module.likelihood == "bernoulli":
        out[f"{split}_bits_per_dim"] = float(bits_per_dim(log_p, data.info).mean())
    return out


def sample_capability(family: str, kind: type[nn.Module]) -> SampleFn:
    """SAMPLE for an unconditional ``kind`` module: n samples at ``temperature``
    (Bernoulli logits / T; mixture scales × T), in the data's shape."""

    def sample(module: nn.Module, opts: SampleOptions) -> Tensor:
        assert isinstance(module, kind)
        density: ExactDensity = module  # type: ignore[assignment]
        if opts.label is not None:
            raise OptionError("label", f"{family} models are unconditional: leave label out")
        if opts.temperature <= 0:
            raise OptionError("temperature", "temperature must be positive")
        density.eval()
        x = density.sample(opts.n, opts.temperature, opts.generator())
        return x.view(opts.n, *density.info.input_shape)

    return sample


def log_prob_capability(family: str, kind: type[nn.Module]) -> LogProbFn:
    """LOG_PROB for an unconditional ``kind`` module, exact: for binary data log P(x), a
    sum of Bernoulli log-probabilities (inputs must be 0 or the top level); for real
    values the density. ``k`` is unused (nothing is sampled)."""

    def log_prob(module: nn.Module, x: Tensor, labels: Tensor | None, k: int) -> LogProb:
        assert isinstance(module, kind)
        density: ExactDensity = module  # type: ignore[assignment]
        if labels is not None:
            raise OptionError("labels", f"{family} models are unconditional: leave labels out")
        density.eval()
        x = x.to(density.shift.device).flatten(1)
        if density.likelihood == "bernoulli":
            top = density.info.value_max or 1.0
            if bool(((x != 0) & (x != top)).any()):
                name = density.info.name
                raise OptionError("inputs", f"{name} is binary: values are 0 or {top:g}")
        with torch.no_grad():
            return LogProb(density.log_prob(x), exact=True)

    return log_prob
