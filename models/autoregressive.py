"""What every autoregressive density family shares (``nade``, ``made``, and the pixel
models to come): p(x) = Π_i p(x_i | x_<i) with exact log-likelihoods (the notes, §7.1).

- Conditionals: ``bernoulli`` for binary data (one logit per dimension; log P(x) is a
  probability, no dequantisation) or ``mog`` for real-valued data (RNADE, Uria et al.
  2013: per dimension a mixture of K Gaussians, 3K numbers: logits, means, log scales, on
  standardised values). ``resolve_likelihood`` picks one for ``auto`` and refuses a
  mismatch; ``conditional_log_prob`` scores, ``draw_conditional`` samples one dimension.
- ``AutoregressiveDensity``, the base of each family's module (the data's units, the
  log-Jacobian, the training loss), and what is written once over it: ``fit_density``,
  ``evaluate``, and the SAMPLE and LOG_PROB capabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.data import DataInfo, Dataset
from models.family import Context, Family, Unsupported
from models.generative import (
    FIELD_PROBES,
    CompleteFn,
    LogProb,
    LogProbFn,
    OptionError,
    ReceptiveFieldFn,
    SampleFn,
    SampleOptions,
    bits_per_dim,
)
from models.loop import final_test, train_epochs

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


class AutoregressiveDensity(nn.Module):
    """Base of an autoregressive family's module: the data's units and the training loss.

    Binary data is modelled as 0/1; real values standardised by the ``shift`` and
    ``scale`` buffers (fitted on the training split), whose log-Jacobian ``log_prob``
    adds back so densities are in the data's own units. A subclass gives
    ``log_prob_units`` (the network's Σ_i log p(u_i | u_<i)) and ``sample``.
    """

    shift: Tensor
    scale: Tensor

    def __init__(self, info: DataInfo, likelihood: Likelihood, components: int = 1) -> None:
        super().__init__()
        self.info, self.likelihood, self.components = info, likelihood, components
        self.d = d = math.prod(info.input_shape)
        self.register_buffer("shift", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))

    def units(self, x: Tensor) -> Tensor:
        """Data -> network units: binary pixels as 0/1, real values standardised."""
        x = x.flatten(1)
        if self.likelihood == "bernoulli":
            return x / (self.info.value_max or 1.0)
        return (x - self.shift) / self.scale

    def from_units(self, u: Tensor) -> Tensor:
        """Network units -> data (the inverse of ``units``)."""
        if self.likelihood == "bernoulli":
            return u * (self.info.value_max or 1.0)
        return u * self.scale + self.shift

    def log_jacobian(self) -> Tensor | float:
        """What turns a density of the units into one of the data: −Σ log scale."""
        return -self.scale.log().sum() if self.likelihood == "mog" else 0.0

    def standardise(self, x: Tensor) -> None:
        """Fit ``shift`` and ``scale`` to the training inputs (real values only)."""
        if self.likelihood == "mog":
            self.shift.copy_(x.mean(0))
            self.scale.copy_(x.std(0).clamp_min(1e-3))

    def log_prob_units(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) (B,) in the data's units (a probability for binary data, a density for
        real values)."""
        return self.log_prob_units(self.units(x)) + self.log_jacobian()

    def training_loss(self, x: Tensor) -> Tensor:
        """The minibatch loss: −log p of the units, averaged."""
        return -self.log_prob_units(self.units(x)).mean()

    def sample(self, n: int, temperature: float, gen: torch.Generator) -> Tensor:
        raise NotImplementedError

    def sample_rows(self, n: int) -> int:
        """The full-model forward rows ``sample(n)`` costs, for the API's bound on work:
        one pass per dimension over the n rows, unless a subclass does better."""
        return n * self.d

    # --- what receptive fields and completions read (one entry per inference mask) ---

    def positions(self) -> list[Tensor]:
        """Each inference mask's order as positions: ``positions()[m][j]`` is the place of
        input j in mask m's order (one mask unless a subclass averages over several)."""
        raise NotImplementedError

    def outputs_of(self, m: int, u: Tensor) -> Tensor:
        """Every conditional's parameters (B, k, D) under mask m at the units ``u`` (B, D)
        (column i: dimension i). A caller holding several masks' results holds ``locked``."""
        raise NotImplementedError

    def locked(self) -> AbstractContextManager[object]:
        """Held around a run of ``outputs_of`` calls (a multi-mask model rewrites its masks)."""
        return nullcontext()

    def complete_rows(self, n: int, drawn: int) -> int:
        """The full-model forward rows completing n inputs with ``drawn`` dimensions to
        draw costs: one pass per drawn dimension, plus with several masks one pass per
        mask to weigh them, unless a subclass does better."""
        masks = len(self.positions())
        return n * drawn + (n * masks if masks > 1 else 0)

    def complete_mask(
        self, m: int, u: Tensor, drawn: Tensor, temperature: float, gen: torch.Generator
    ) -> Tensor:
        """``u`` (n, D) with the dimensions ``drawn`` (flat indices, in mask m's order)
        drawn one batched pass each from mask m's conditionals (the others kept)."""
        u = u.clone()
        for i in drawn.tolist():
            out = self.outputs_of(m, u)[:, :, i]  # (n, k)
            u[:, i] = draw_conditional(self.likelihood, out, self.components, temperature, gen)
        return u


def fit_density(module: AutoregressiveDensity, data: Dataset, ctx: Context) -> None:
    """Maximum likelihood with the shared loop: standardise, then ``train_epochs`` on
    ``module.training_loss``, validation NLL each epoch, the test NLL at the end."""
    dev = ctx.device
    module.to(dev)
    x, y = data.x_train.to(dev).flatten(1), data.y_train.to(dev)
    module.standardise(x)
    opt = ctx.make_optimizer(module.parameters())
    finished = train_epochs(
        module, opt, x, y, ctx,
        loss_fn=lambda xb, _: module.training_loss(xb),
        evaluate=lambda: evaluate(module, data, "val"),
    )  # fmt: skip
    if finished:
        final_test(module, ctx, lambda: evaluate(module, data, "test"))


def evaluate(module: AutoregressiveDensity, data: Dataset, split: str) -> dict[str, float]:
    """NLL on the split (nats per example); bits per dimension for binary images."""
    x = (data.x_val if split == "val" else data.x_test).to(module.shift.device).flatten(1)
    with torch.no_grad():
        log_p = torch.cat([module.log_prob(xb) for xb in x.split(512)])
    nll = float(-log_p.mean())
    out = {f"{split}_nll": nll, f"{split}_loss": nll}
    if module.likelihood == "bernoulli":
        out[f"{split}_bits_per_dim"] = float(bits_per_dim(log_p, data.info).mean())
    return out


def sample_capability(family: str) -> SampleFn:
    """SAMPLE for an unconditional family's ``AutoregressiveDensity``: n samples at ``temperature``
    (Bernoulli logits / T; mixture scales × T), in the data's shape."""

    def sample(module: nn.Module, opts: SampleOptions) -> Tensor:
        assert isinstance(module, AutoregressiveDensity)
        density = module
        if opts.label is not None:
            raise OptionError("label", f"{family} models are unconditional: leave label out")
        if opts.temperature <= 0:
            raise OptionError("temperature", "temperature must be positive")
        rows = density.sample_rows(opts.n)
        if opts.max_rows is not None and rows > opts.max_rows:  # the request's bound on work
            most = opts.max_rows * opts.n // rows
            raise OptionError(
                "n", f"{opts.n} samples take {rows} forward rows (sequential); at most {most}"
            )
        density.eval()
        x = density.sample(opts.n, opts.temperature, opts.generator())
        return x.view(opts.n, *density.info.input_shape)

    return sample


def log_prob_capability(family: str) -> LogProbFn:
    """LOG_PROB for an unconditional family's ``AutoregressiveDensity``, exact: for binary
    data log P(x), a sum of Bernoulli log-probabilities (inputs must be 0 or the top
    level); for real values the density. ``k`` is unused (nothing is sampled)."""

    def log_prob(module: nn.Module, x: Tensor, labels: Tensor | None, k: int) -> LogProb:
        assert isinstance(module, AutoregressiveDensity)
        density = module
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


# inputs the receptive field averages the gradient magnitudes over (binary, or standard
# normal units), drawn from this seed: the map is a fixed function of the weights
FIELD_INPUTS, FIELD_SEED = FIELD_PROBES, 0


def receptive_field_capability(family: str) -> ReceptiveFieldFn:
    """RECEPTIVE_FIELD for an ``AutoregressiveDensity``: Σ |∂ out_j(position) / ∂ u_l| over
    every parameter j of the conditional of dimension ``position``, ``FIELD_INPUTS``
    fixed random inputs and every inference mask; exactly zero where input l cannot
    influence it (the masks, the order), its own position included."""

    def receptive_field(module: nn.Module, position: int) -> Tensor:
        assert isinstance(module, AutoregressiveDensity)
        density = module
        if not 0 <= position < density.d:
            raise OptionError(
                "position", f"{family}: position {position} is not in 0..{density.d - 1}"
            )
        density.eval()
        dev = density.shift.device
        # autograd, also when called in the API's inference mode: tensors made outside it
        with torch.inference_mode(False), torch.enable_grad(), density.locked():
            gen = torch.Generator().manual_seed(FIELD_SEED)
            if density.likelihood == "bernoulli":
                raw = (torch.rand(FIELD_INPUTS, density.d, generator=gen) < 0.5).float()
            else:
                raw = torch.randn(FIELD_INPUTS, density.d, generator=gen)
            field = torch.zeros(density.d, device=dev)
            for m in range(len(density.positions())):
                u = raw.to(dev).requires_grad_(True)
                out = density.outputs_of(m, u)[:, :, position]  # (R, k)
                for j in range(out.shape[1]):  # rows are independent: one backward per j
                    (grad,) = torch.autograd.grad(out[:, j].sum(), u, retain_graph=True)
                    field += grad.abs().sum(0).detach()
        return field.cpu().view(density.info.input_shape)

    return receptive_field


def complete_capability(record: Callable[[], Family]) -> CompleteFn:
    """COMPLETE for an unconditional ``AutoregressiveDensity``: the dimensions not
    ``observed`` drawn one batched pass each in the model's order, the observed ones kept.

    This is an exact draw from p(x_unobserved | x_observed) when every observed dimension
    comes before every unobserved one in the order (``order: natural`` and the top rows
    of an image observed): the conditionals of the unobserved dimensions then see all of
    the observed ones and nothing else is summed out. With several inference masks
    (``made``) each row's mask is drawn from its posterior p(m | x_observed) ∝ p_m(x_observed),
    then completed under it, so the draw is exact for the averaged model too. Any other
    observed set (a random order) would need the observed dimensions that come late in the
    order marginalised: refused with ``Unsupported`` (the API's 409), saying to train with
    order natural.
    """

    def complete(module: nn.Module, x: Tensor, observed: Tensor, opts: SampleOptions) -> Tensor:
        assert isinstance(module, AutoregressiveDensity)
        density = module
        family = record().name
        if opts.label is not None:
            raise OptionError("label", f"{family} models are unconditional: leave label out")
        if opts.temperature <= 0:
            raise OptionError("temperature", "temperature must be positive")
        shape = density.info.input_shape
        if tuple(observed.shape) != shape or tuple(x.shape[1:]) != shape:
            raise OptionError("inputs", f"inputs and observed have the data's shape {list(shape)}")
        dev = density.shift.device
        seen = observed.to(dev).flatten().bool()  # (D,)
        x = x.to(dev).flatten(1).float()
        n = len(x)
        if density.likelihood == "bernoulli":
            top = density.info.value_max or 1.0
            if bool(((x[:, seen] != 0) & (x[:, seen] != top)).any()):
                name = density.info.name
                raise OptionError("inputs", f"{name} is binary: values are 0 or {top:g}")
        positions = [p.to(dev) for p in density.positions()]
        for pos in positions:
            if (
                bool(seen.any())
                and bool((~seen).any())
                and bool(pos[seen].max() > pos[~seen].min())
            ):
                _refuse_order(record())
        drawn_count = int((~seen).sum())
        rows = density.complete_rows(n, drawn_count)
        if opts.max_rows is not None and rows > opts.max_rows:  # the request's bound on work
            most = opts.max_rows * n // max(rows, 1)
            raise OptionError(
                "n", f"completing {n} inputs takes {rows} forward rows (sequential); at most {most}"
            )
        density.eval()
        gen = opts.generator()
        u = torch.where(seen, density.units(x), torch.zeros((), device=dev))
        with torch.no_grad(), density.locked():
            which = _posterior_masks(density, u, seen, gen)
            for m, pos in enumerate(positions):
                rows_m = (which == m).nonzero().squeeze(1)
                if len(rows_m) == 0 or drawn_count == 0:
                    continue
                order = torch.argsort(pos)  # dimensions in mask m's order
                drawn = order[~seen[order]]
                u[rows_m] = density.complete_mask(m, u[rows_m], drawn, opts.temperature, gen)
        out = torch.where(seen, x, density.from_units(u))
        return out.view(n, *shape)

    return complete


def _posterior_masks(
    density: AutoregressiveDensity, u: Tensor, seen: Tensor, gen: torch.Generator
) -> Tensor:
    """Each row's mask (n,), drawn from p(m | u_seen) ∝ p_m(u_seen) (all 0 with one mask):
    the observed dimensions are a prefix of every mask's order, so p_m(u_seen) is the
    product of their conditionals under mask m."""
    n, masks = len(u), len(density.positions())
    if masks == 1 or not bool(seen.any()):
        if masks == 1:
            return torch.zeros(n, dtype=torch.long, device=u.device)
        return torch.randint(masks, (n,), generator=gen, device=gen.device).to(u.device)
    log_w = torch.stack(
        [
            conditional_log_prob(
                density.likelihood,
                density.outputs_of(m, u)[:, :, seen],
                u[:, seen],
                density.components,
            )
            for m in range(masks)
        ],
        1,
    )  # (n, M)
    return torch.multinomial(log_w.softmax(1).cpu(), 1, generator=gen).squeeze(1).to(u.device)


def _refuse_order(family: Family) -> None:
    raise Unsupported(
        family,
        "complete these inputs",
        ": an exact completion needs every observed dimension before every unobserved "
        "one in the model's order, and this model's order puts some observed ones after "
        "(train it with order natural to complete images from their top rows)",
    )
