"""``vae``: variational autoencoder (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

An encoder q_φ(z|x) = N(μ(x), diag σ²(x)), a prior p(z) = N(0, I) and a decoder p_θ(x|z)
are trained by maximising the evidence lower bound (the notes, §5.2), logged both ways:

    ELBO = E_q[log p(x|z)] - KL(q(z|x) ‖ p(z))                      ``elbo`` = recon - kl
         = E_q[log p(x|z)] + E_q[log p(z)] - E_q[log q(z|x)]         ``elbo_3term``
    log p(x) = ELBO + KL(q(z|x) ‖ p(z|x)) ≥ ELBO

The first form uses the closed-form Gaussian KL, the second three single-sample Monte
Carlo terms; they agree in expectation. β weights the KL in the training objective
(Higgins et al. 2017); the logged ELBO is always the β = 1 bound.

Gradient of E_q[log p(x|z)] with respect to φ, ``estimator``:
- ``reparam``: z = μ + σ ⊙ ε, ε ~ N(0, I), and backpropagate through z (eq. 10).
- ``reinforce``: the score function E_q[(f(z) - b) ∇_φ log q(z|x)] with the learning
  signal f = log p(x|z) and a baseline b that does not depend on z (so the estimate stays
  unbiased): a moving average of f (``mean``), plus an input-dependent network fitted to
  the rest by least squares (``learned``, NVIL: Mnih & Gregor 2014). The KL keeps its
  closed-form gradient and the decoder its pathwise one in both cases.
``grad_var`` is the variance (trace of the covariance) of the encoder's gradient
estimate on a fixed batch across independent draws: why REINFORCE learns slower.

Likelihoods (``models.likelihoods``): Bernoulli for binary data; for multi-level images
a discretised logistic (an exact probability per level) or a Gaussian on uniformly
dequantised values (then log P(v) ≥ E_u log p(v + u) + D log Δ); for continuous data a
Gaussian density. Test log-likelihood: the importance-weighted bound (Burda et al. 2016)
log p(x) ≥ E log (1/k) Σ_i p(x, z_i) / q(z_i|x), which rises with k towards log p(x).

Checkpoint ``state["model"]`` keys: ``encoder.*``, ``decoder.*``, ``baseline.*`` (learned
REINFORCE baseline only), ``shift``, ``scale`` (data units -> network units),
``signal_mean``, ``signal_seen`` (REINFORCE moving average).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from models import likelihoods as lik
from models.data import DataInfo, Dataset
from models.family import Capability, Context, Decoder, Family, LikelihoodReport, Params
from models.generative import LogProb, OptionError, SampleOptions, bits_per_dim, latent_path
from models.layers import ACTIVATIONS, ActivationName, Hidden, mlp_trunk
from models.loop import final_test, train_epochs

Likelihood = Literal["bernoulli", "gaussian", "discretized_logistic"]
DATASETS = frozenset(
    {"digits", "digits_bin", "mnist5k", "mnist5k_bin", "moons", "rings8", "grid25", "checkerboard"}
)
PROBE = 64  # examples in the fixed batch on which the gradient variance is measured
MA_DECAY = 0.9  # moving average of the REINFORCE learning signal


class VAEParams(Params):
    z_dim: int = Field(16, ge=1, le=512, description="latent size")
    architecture: Literal["mlp", "conv"] = Field(
        "mlp", description="mlp, or conv (images: two stride-2 convolutions each way)"
    )
    hidden: Hidden = Field(
        default_factory=lambda: [256],
        description="mlp: encoder widths (the decoder mirrors them)",
    )
    channels: int = Field(32, ge=1, le=256, description="conv: channels of the first layer")
    activation: ActivationName = Field("relu", description="nonlinearity of both networks")
    likelihood: Literal["auto", "bernoulli", "gaussian", "discretized_logistic"] = Field(
        "auto",
        description="p(x|z); auto: bernoulli for binary data, discretized_logistic for other "
        "discrete data, gaussian for continuous data",
    )
    estimator: Literal["reparam", "reinforce"] = Field(
        "reparam", description="gradient of E_q[log p(x|z)] for the encoder"
    )
    baseline: Literal["none", "mean", "learned"] = Field(
        "learned", description="reinforce: control variate (moving average, + a network of x)"
    )
    beta: float = Field(1.0, ge=0.0, le=100.0, description="weight of the KL in the objective")
    conditional: bool = Field(False, description="condition encoder and decoder on the labels")
    k_eval: int = Field(100, ge=1, le=5000, description="importance samples for the test bound")
    grad_var_samples: int = Field(
        8, ge=0, le=64, description="gradient draws for grad_var per evaluation (0: off)"
    )


def resolve_likelihood(name: str, info: DataInfo) -> Likelihood:
    """The likelihood ``auto`` stands for, or a ValueError for one the data cannot take."""
    discrete = info.levels is not None and info.value_max is not None
    if name == "auto":
        if not discrete:
            return "gaussian"
        return "bernoulli" if info.levels == 2 else "discretized_logistic"
    if name == "bernoulli" and info.levels != 2:
        raise ValueError(f"likelihood bernoulli needs binary data; {info.name} is not")
    if name == "discretized_logistic" and not discrete:
        raise ValueError(f"likelihood discretized_logistic needs discrete data; {info.name} is not")
    return name  # type: ignore[return-value]


# --- networks: encoders (u, c) -> (μ, log σ²), decoders (z, c) -> (B, n_out, D) ----------------


def _cat(a: Tensor, c: Tensor | None) -> Tensor:
    return a if c is None else torch.cat([a, c], -1)


class MLPEncoder(nn.Module):
    def __init__(self, d: int, n_cond: int, hidden: list[int], act: str, z_dim: int) -> None:
        super().__init__()
        self.trunk = mlp_trunk(d + n_cond, hidden, act)
        self.head = nn.Linear(hidden[-1], 2 * z_dim)

    def forward(self, u: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        mean, log_var = self.head(self.trunk(_cat(u, c))).chunk(2, -1)
        return mean, log_var


class MLPDecoder(nn.Module):
    def __init__(self, d: int, n_out: int, n_cond: int, hidden: list[int], act: str, z: int):
        super().__init__()
        self.d, self.n_out = d, n_out
        self.trunk = mlp_trunk(z + n_cond, hidden[::-1], act)
        self.head = nn.Linear(hidden[0], n_out * d)

    def forward(self, z: Tensor, c: Tensor | None) -> Tensor:
        return self.head(self.trunk(_cat(z, c))).view(len(z), self.n_out, self.d)


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> two 4x4 stride-2 convolutions -> H/4 x W/4 features -> μ, log σ²."""

    def __init__(self, shape: tuple[int, ...], n_cond: int, ch: int, act: str, z_dim: int):
        super().__init__()
        c, h, w = shape
        self.shape = shape
        self.convs = nn.Sequential(
            nn.Conv2d(c, ch, 4, 2, 1), ACTIVATIONS[act](),
            nn.Conv2d(ch, 2 * ch, 4, 2, 1), ACTIVATIONS[act](), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(2 * ch * (h // 4) * (w // 4) + n_cond, 2 * z_dim)

    def forward(self, u: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.convs(u.view(len(u), *self.shape))
        mean, log_var = self.head(_cat(h, c)).chunk(2, -1)
        return mean, log_var


class ConvDecoder(nn.Module):
    """z -> H/4 x W/4 features -> two 4x4 stride-2 transposed convolutions -> (B, n_out, D)."""

    def __init__(self, shape: tuple[int, ...], n_out: int, n_cond: int, ch: int, act: str, z: int):
        super().__init__()
        c, h, w = shape
        self.d, self.n_out = c * h * w, n_out
        self.net = nn.Sequential(
            nn.Linear(z + n_cond, 2 * ch * (h // 4) * (w // 4)), ACTIVATIONS[act](),
            nn.Unflatten(1, (2 * ch, h // 4, w // 4)),
            nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1), ACTIVATIONS[act](),
            nn.ConvTranspose2d(ch, n_out * c, 4, 2, 1),
        )  # fmt: skip

    def forward(self, z: Tensor, c: Tensor | None) -> Tensor:
        return self.net(_cat(z, c)).view(len(z), self.n_out, self.d)  # (B, n_out·C, H, W)


class VAE(nn.Module):
    """Data units in, data units out; the networks work on u = (x - shift) / scale."""

    shift: Tensor
    scale: Tensor
    signal_mean: Tensor
    signal_seen: Tensor

    def __init__(self, params: VAEParams, info: DataInfo) -> None:
        super().__init__()
        self.likelihood = resolve_likelihood(params.likelihood, info)
        self.d, self.z_dim = math.prod(info.input_shape), params.z_dim
        self.conditional = params.conditional
        if params.conditional and not info.n_classes:
            raise ValueError(f"conditional needs class labels; {info.name} has none")
        self.n_classes = info.n_classes or 0
        n_cond = self.n_classes if params.conditional else 0
        self.continuous = info.levels is None or info.value_max is None
        # width of one level in network units (values 0, bin, ..., 1), None if continuous
        self.bin = None if self.continuous else 1.0 / (int(info.levels or 2) - 1)
        self.register_buffer("shift", torch.zeros(self.d))
        self.register_buffer("scale", torch.full((self.d,), float(info.value_max or 1.0)))
        n_out = 1 if self.likelihood == "bernoulli" else 2  # logits, or location and log scale
        act = params.activation
        if params.architecture == "conv":
            shape = info.image_shape
            if shape is None or len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
                raise ValueError(f"architecture conv needs images of side 4k; {info.name} has none")
            ch = params.channels
            self.encoder: nn.Module = ConvEncoder(shape, n_cond, ch, act, params.z_dim)
            self.decoder: nn.Module = ConvDecoder(shape, n_out, n_cond, ch, act, params.z_dim)
        else:
            self.encoder = MLPEncoder(self.d, n_cond, params.hidden, act, params.z_dim)
            self.decoder = MLPDecoder(self.d, n_out, n_cond, params.hidden, act, params.z_dim)
        learned = params.estimator == "reinforce" and params.baseline == "learned"
        self.baseline = (
            nn.Sequential(nn.Linear(self.d, 64), ACTIVATIONS[act](), nn.Linear(64, 1))
            if learned
            else None
        )
        self.register_buffer("signal_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("signal_seen", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit_scale(self, x: Tensor) -> None:
        """Continuous data: standardise with training statistics (images keep 0..value_max)."""
        if self.continuous:
            self.shift.copy_(x.mean(0))
            self.scale.copy_(x.std(0, unbiased=False).clamp_min(1e-3))

    def units(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale

    def condition(self, labels: Tensor | None, field: str = "labels") -> Tensor | None:
        """One-hot labels for a conditional model; an OptionError when they do not fit it."""
        if not self.conditional:
            if labels is not None:
                raise OptionError(field, "the model is not conditional: leave labels out")
            return None
        if labels is None:
            raise OptionError(field, "the model is conditional: give a class label per row")
        return F.one_hot(labels.long(), self.n_classes).to(self.shift.dtype)

    def log_px_z(self, u: Tensor, z: Tensor, c: Tensor | None) -> Tensor:
        """log p(x|z) in nats (B,) of u (B, D): the data's probability for discrete data,
        its density in data units for continuous data (dequantised: the bound's offset
        D log Δ included)."""
        out = self.decoder(z, c)  # (B, n_out, D)
        if self.likelihood == "bernoulli":
            return lik.bernoulli_log_prob(u, out[:, 0])
        if self.likelihood == "discretized_logistic":
            assert self.bin is not None
            return lik.discretized_logistic_log_prob(u, out[:, 0], out[:, 1], self.bin)
        log_var = 2 * out[:, 1].clamp_min(lik.MIN_LOG_SCALE)
        ll = lik.gaussian_log_prob(u, out[:, 0], log_var)
        if self.bin is not None:
            return ll + self.d * math.log(self.bin)  # log P(v) ≥ log p(v + u·Δ) + D log Δ
        return ll - self.scale.log().sum()  # density in data units

    def mean_x(self, z: Tensor, c: Tensor | None) -> Tensor:
        """The decoder's mean in data units (Bernoulli: the probabilities) (B, D)."""
        out = self.decoder(z, c)[:, 0]
        if self.likelihood == "bernoulli":
            return torch.sigmoid(out) * self.scale
        if not self.continuous:
            out = out.clamp(0.0, 1.0)
        return self.shift + self.scale * out

    def dequantise(self, u: Tensor, generator: torch.Generator | None) -> Tensor:
        """Gaussian on discrete data: v -> v + U[0, 1)·Δ (other likelihoods: unchanged)."""
        if self.likelihood != "gaussian" or self.bin is None:
            return u
        return u + torch.rand(u.shape, generator=generator, device=u.device) * self.bin


def build(params: VAEParams, info: DataInfo) -> VAE:
    return VAE(params, info)


# --- the objective ---------------------------------------------------------------------------


@dataclass
class Terms:
    """One single-sample estimate on a batch: the surrogate loss whose value is the mean
    negative β-objective and whose gradient is the chosen estimator, and per-row terms."""

    loss: Tensor
    recon: Tensor  # log p(x|z) (B,)
    kl: Tensor  # closed form (B,)
    log_pz: Tensor  # log p(z) (B,)
    log_qz: Tensor  # log q(z|x) (B,)


def gradient_only(t: Tensor) -> Tensor:
    """Zero in value, ``t``'s gradient: surrogate terms leave the logged loss unchanged."""
    return t - t.detach()


def estimate(
    vae: VAE,
    x: Tensor,
    c: Tensor | None,
    estimator: str,
    beta: float,
    *,
    baseline: str = "none",
    generator: torch.Generator | None = None,
    update_baseline: bool = False,
) -> Terms:
    u = vae.dequantise(vae.units(x), generator)
    mean, log_var = vae.encoder(u, c)  # (B, K) each
    eps = torch.randn(mean.shape, generator=generator, device=mean.device)
    z = mean + (0.5 * log_var).exp() * eps  # reparameterisation, Kingma & Welling eq. 10
    if estimator == "reinforce":
        z = z.detach()  # no path from z back to φ: the score function carries φ's gradient
    recon = vae.log_px_z(u, z, c)
    kl = lik.gaussian_kl(mean, log_var)
    log_pz = lik.standard_normal_log_prob(z)
    log_qz = lik.gaussian_log_prob(z, mean, log_var)
    loss = -(recon - beta * kl).mean()
    if estimator == "reinforce":
        signal = recon.detach()
        if update_baseline and not bool(vae.signal_seen):
            vae.signal_mean.fill_(float(signal.mean()))
            vae.signal_seen.fill_(True)
        b = torch.zeros_like(signal) if baseline == "none" else vae.signal_mean.to(signal)
        if vae.baseline is not None:
            fitted = vae.baseline(u).squeeze(-1)  # b_ψ(x) fits f - moving average
            loss = loss + gradient_only((signal - b - fitted).pow(2).mean())
            b = b + fitted.detach()
        loss = loss - gradient_only(((signal - b) * log_qz).mean())
        if update_baseline:
            with torch.no_grad():
                vae.signal_mean.mul_(MA_DECAY).add_((1 - MA_DECAY) * signal.double().mean())
    return Terms(loss, recon, kl, log_pz, log_qz)


def encoder_grad_variance(
    vae: VAE, x: Tensor, c: Tensor | None, estimator: str, baseline: str, draws: int, seed: int
) -> float:
    """tr Cov of the encoder's gradient estimate on one fixed batch across ``draws``
    independent draws (the same draws at every evaluation)."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    params = [p for p in vae.encoder.parameters() if p.requires_grad]
    grads = []
    with torch.enable_grad():
        for _ in range(draws):
            t = estimate(vae, x, c, estimator, 1.0, baseline=baseline, generator=gen)
            g = torch.autograd.grad(t.loss, params)
            grads.append(torch.cat([gi.flatten() for gi in g]).double())
    return float(torch.stack(grads).var(0).sum())


@torch.no_grad()
def iwae_bound(
    vae: VAE, x: Tensor, c: Tensor | None, k: int, generator: torch.Generator | None = None
) -> Tensor:
    """log (1/k) Σ_i p(x, z_i)/q(z_i|x), z_i ~ q(z|x), per row (N,) (Burda et al. 2016,
    eq. 8; k = 1 is the ELBO). Importance samples go in chunks of about 2²² values."""
    out = []
    block = 256
    for start in range(0, len(x), block):
        xb = x[start : start + block]
        cb = None if c is None else c[start : start + block]
        u = vae.dequantise(vae.units(xb), generator)
        mean, log_var = vae.encoder(u, cb)
        n, chunk = len(xb), max(1, 2**22 // (len(xb) * max(vae.d, vae.z_dim)))
        log_w = []
        for i in range(0, k, chunk):
            m = min(chunk, k - i)
            eps = torch.randn((m, n, vae.z_dim), generator=generator, device=x.device)
            z = (mean + (0.5 * log_var).exp() * eps).reshape(m * n, -1)  # row j·n + b
            cr = None if cb is None else cb.repeat(m, 1)
            lw = vae.log_px_z(u.repeat(m, 1), z, cr) + lik.standard_normal_log_prob(z)
            lw = lw - lik.gaussian_log_prob(z, mean.repeat(m, 1), log_var.repeat(m, 1))
            log_w.append(lw.view(m, n))
        out.append(torch.logsumexp(torch.cat(log_w), 0) - math.log(k))
    return torch.cat(out)


# --- training ----------------------------------------------------------------------------------


def _labels(vae: VAE, y: Tensor) -> Tensor | None:
    return vae.condition(y) if vae.conditional else None


@torch.no_grad()
def val_elbo(vae: VAE, x: Tensor, y: Tensor, seed: int) -> Tensor:
    """Single-sample ELBO (β = 1) per row with fixed noise, so epochs compare."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    return iwae_bound(vae, x, _labels(vae, y), 1, gen)


def fit(module: nn.Module, data: Dataset, params: VAEParams, ctx: Context) -> None:
    assert isinstance(module, VAE)
    vae, dev = module, ctx.device
    vae.to(dev)
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    x_val, y_val = data.x_val.to(dev), data.y_val.to(dev)
    vae.fit_scale(x)
    opt = ctx.make_optimizer(vae.parameters())
    sums: defaultdict[str, list[Tensor]] = defaultdict(list)
    probe_x, probe_c = x[:PROBE], _labels(vae, y[:PROBE])

    def loss_fn(xb: Tensor, yb: Tensor) -> Tensor:
        t = estimate(
            vae, xb, _labels(vae, yb), params.estimator, params.beta,
            baseline=params.baseline, update_baseline=True,
        )  # fmt: skip
        for name in ("recon", "kl", "log_pz", "log_qz"):
            sums[name].append(getattr(t, name).detach().mean())
        return t.loss

    def validate() -> dict[str, float]:
        m = {name: float(torch.stack(v).mean()) for name, v in sums.items()}
        sums.clear()
        m["elbo"] = m["recon"] - m["kl"]
        m["elbo_3term"] = m["recon"] + m["log_pz"] - m["log_qz"]
        ev = val_elbo(vae, x_val, y_val, ctx.seed)
        m |= {"val_elbo": float(ev.mean()), "val_loss": -float(ev.mean())}
        m["val_bpd"] = float(bits_per_dim(ev, data.info).mean())
        if params.grad_var_samples >= 2:
            gv = lambda est: encoder_grad_variance(  # noqa: E731
                vae, probe_x, probe_c, est, params.baseline, params.grad_var_samples, ctx.seed
            )
            m["grad_var"] = gv(params.estimator)
            if params.estimator == "reinforce":
                m["grad_var_reparam"] = gv("reparam")
        return m

    finished = train_epochs(vae, opt, x, y, ctx, loss_fn=loss_fn, evaluate=validate)
    if finished:
        final_test(vae, ctx, lambda: test_metrics(vae, data, params.k_eval, ctx.seed))


def test_metrics(vae: VAE, data: Dataset, k: int, seed: int) -> dict[str, float]:
    """``test_elbo`` and the importance-weighted ``test_iwae_nll`` (nats, and ``_bpd``)."""
    dev = vae.shift.device
    x, y = data.x_test.to(dev), data.y_test.to(dev)
    elbo = val_elbo(vae, x, y, seed)
    gen = torch.Generator(device=dev).manual_seed(seed)
    iw = iwae_bound(vae, x, _labels(vae, y), k, gen)
    return {
        "test_elbo": float(elbo.mean()),
        "test_iwae_nll": -float(iw.mean()),
        "test_iwae_bpd": float(bits_per_dim(iw, data.info).mean()),
        "test_k": float(k),
    }


# --- inference (models/generative.py signatures) -----------------------------------------------


@torch.no_grad()
def sample(module: nn.Module, opts: SampleOptions) -> Tensor:
    """Decoder means of z ~ N(0, temperature² I); a conditional model without ``label``
    cycles through the classes (sample i has class i mod C)."""
    assert isinstance(module, VAE)
    dev = module.shift.device
    z = torch.randn((opts.n, module.z_dim), generator=opts.generator(dev), device=dev)
    labels = None
    if module.conditional:
        labels = torch.arange(opts.n, device=dev) % module.n_classes
        if opts.label is not None:
            labels = torch.full_like(labels, opts.label)
    elif opts.label is not None:
        raise OptionError("label", "the model is not conditional: leave label out")
    return module.mean_x(z * opts.temperature, module.condition(labels, "label"))


@torch.no_grad()
def log_prob(module: nn.Module, x: Tensor, labels: Tensor | None, k: int) -> LogProb:
    """The importance-weighted bound with ``k`` samples (fixed noise: same input, same answer)."""
    assert isinstance(module, VAE)
    dev = module.shift.device
    c = module.condition(None if labels is None else labels.to(dev))
    gen = torch.Generator(device=dev).manual_seed(0)
    return LogProb(iwae_bound(module, x.to(dev), c, k, gen), exact=False, k=k)


@torch.no_grad()
def encode(module: nn.Module, x: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
    assert isinstance(module, VAE)
    dev = module.shift.device
    c = module.condition(None if labels is None else labels.to(dev))
    mean, log_var = module.encoder(module.units(x.to(dev)), c)
    return {"mean": mean, "log_var": log_var}


@torch.no_grad()
def decode(module: nn.Module, z: Tensor, labels: Tensor | None) -> Tensor:
    assert isinstance(module, VAE)
    dev = module.shift.device
    c = module.condition(None if labels is None else labels.to(dev))
    return module.mean_x(z.to(dev), c)


def latent_dim(params: VAEParams) -> int:
    return params.z_dim


FAMILY = Family(
    name="vae",
    description="variational autoencoder: ELBO both ways, reparam or REINFORCE gradients, "
    "β, conditional; importance-weighted log p bound",
    params=VAEParams,
    datasets=DATASETS,
    capabilities={
        Capability.SAMPLE: sample,
        Capability.LOG_PROB: log_prob,
        Capability.ENCODE: encode,
        Capability.DECODE: Decoder(decode, latent_dim),
        Capability.INTERPOLATE: latent_path,
    },
    build=build,
    fit=fit,
    default_epochs=50,
    default_log_prob_k=100,
    # the importance-weighted bound with k_eval samples (logged as test_k)
    likelihood=LikelihoodReport("test_iwae_nll", "test_iwae_bpd", "bound", samples="test_k"),
)
