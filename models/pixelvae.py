"""``pixelvae``: a VAE whose decoder is a PixelCNN (Gulrajani, Kumar, Ahmed, Taiga, Visin,
Vazquez & Courville 2017, "PixelVAE: A Latent Variable Model for Natural Images").

An encoder q(z|x) = N(μ(x), diag σ²(x)) (an MLP over the image, levels scaled to [−1, 1]),
a prior p(z) = N(0, I) of ``latent_dim`` dimensions, and a decoder p(x|z) = Π_k p(x_k |
x_<k, z): a small gated PixelCNN (``models.nets.gated``: vertical and horizontal stacks,
gated tanh · σ units, no blind spot) conditioned on z, with a softmax over the data's grey
levels per pixel, so log p(x|z) is exact and one pass gives every conditional.

- **Conditioning on z** (van den Oord et al. 2016, §2.3, the location-dependent form
  s = m(h)): z goes through an MLP (``hidden`` units) to ``Z_MAPS`` feature maps of the
  image's size; each gated layer adds a 1 × 1 convolution of them to its gates'
  pre-activations (vertical and horizontal stack), and the head adds another to the
  horizontal stack's output. The maps do not read the image, so the decoder stays
  autoregressive given z (tested by its Jacobian).
- ``decoder_layers`` gated layers (the first with mask A), all of kernel ``kernel_size``:
  their receptive field grows by k // 2 rows per layer. **0** is a factorised decoder,
  p(x|z) = Π_k p(x_k | z), a plain VAE with a softmax per pixel: the contrast. The notes'
  "PixelCNN is too powerful": a decoder that sees enough of the past models the image
  alone, and the KL term then pushes q(z|x) onto the prior (KL → 0, no active units);
  a small one leaves the global structure to z (the paper's point).
- **Training**: the ELBO, E_q[log p(x|z)] − KL(q ‖ p), one reparameterised sample
  z = μ + σ ⊙ ε per image, the reconstruction the PixelCNN's exact log p(x|z) and the KL
  in closed form. No KL warm-up and no free bits: they change what the KL measures (a
  free-bits floor keeps it above zero by construction), and the KL of the plain ELBO is
  what shows whether the decoder uses z.
- **Logged each epoch**: ``val_elbo``, ``val_kl``, ``val_recon`` (nats per image, one
  fixed-noise sample), ``val_loss`` = −``val_elbo``, and ``active_units`` (Burda, Grosse &
  Salakhutdinov 2016, §5.2): latent units u with Cov_x(E_q[z_u]) > 0.01 over the
  validation images. **At the end**: ``test_elbo``, ``test_kl``, ``test_active_units``,
  the importance-weighted bound log p(x) ≥ E log (1/k) Σ_i p(x, z_i) / q(z_i|x)
  (``test_iwae_nll``, ``test_iwae_bpd``, ``test_k`` = ``k_eval``) and
  ``sample_seconds_per_image``.

Inference: SAMPLE (z from the prior, then raster-order sampling of p(x|z); ``temperature``
divides the pixels' logits, as for the pixel families, z is not scaled), LOG_PROB (the
importance-weighted bound with ``k`` samples, fixed noise: a bound, not exact), ENCODE
(q(z|x)'s ``mean`` and ``log_var``), DECODE (z -> an image drawn from p(x|z), its uniforms
seeded by z's bytes: the same z gives the same image), INTERPOLATE (a straight line in z,
decoded), RECEPTIVE_FIELD (of the decoder given z = 0, the prior's mean: the maps of z add
to every pixel alike, so what can influence a pixel does not depend on z; a factorised
decoder has none: 409) and COMPLETE (the top rows observed: z drawn from p(z | observed)
by sampling-importance-resampling over ``COMPLETE_PROPOSALS`` prior draws weighted by
p(observed | z), exact as the proposals grow, then the rest in raster order given z).

Checkpoint ``state["model"]`` keys: ``encoder.{0,2}.{weight,bias}`` (MLP), ``encoder_head.
{weight,bias}`` (μ, log σ²), ``z_net.{0,2}.{weight,bias}`` (z -> maps), ``layers.<i>.{v,h,
link,h_out}.{weight,bias}`` (gated layers), ``z_gates.<i>.{weight,bias}``, ``z_head.{weight,
bias}``, ``head.{1,3}.{weight,bias}``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Self

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from models import likelihoods as lik
from models.data import DataInfo, Dataset
from models.family import (
    Capability,
    Context,
    Decoder,
    Family,
    LikelihoodReport,
    Params,
    Unsupported,
)
from models.generative import LogProb, OptionError, SampleOptions, latent_path
from models.layers import mlp_trunk
from models.loop import final_test, train_epochs
from models.nets.gated import GatedLayer
from models.pixel import (
    PixelDensity,
    _check_options,
    _refuse_observed,
    log_prob_rows,
    receptive_field_capability,
    sample_capability,
    sampling_time,
)

DATASETS = frozenset({"digits_bin", "digits", "mnist5k_bin", "mnist5k"})
Z_MAPS = 4  # feature maps of z at the image's size, read by every layer's gates
ACTIVE = 0.01  # a latent unit is active when Cov_x(E_q[z_u]) exceeds it (Burda et al. 2016)
IW_ROWS = 256  # importance samples × images per decoder pass (the bound's chunks)
COMPLETE_PROPOSALS = 64  # prior draws of z per completion, resampled by p(observed | z)


class PixelVAEParams(Params):
    latent_dim: int = Field(16, ge=1, le=256, description="size of z")
    hidden: int = Field(256, ge=1, le=2048, description="units of the encoder and z-net MLPs")
    channels: int = Field(32, ge=2, le=256, description="feature maps of the decoder's stacks")
    decoder_layers: int = Field(
        2, ge=0, le=16, description="gated layers of the decoder (0: factorised p(x|z))"
    )
    kernel_size: int = Field(3, ge=3, le=11, description="odd kernel size of the gated layers")
    k_eval: int = Field(100, ge=1, le=5000, description="importance samples for the test bound")

    @model_validator(mode="after")
    def _odd(self) -> Self:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centre pixel), not {self.kernel_size}")
        return self


class PixelVAE(PixelDensity):
    """The ``PixelDensity`` machinery (levels, raster-order ``fill``, work counts) with z in
    the place of labels: ``net(u, z)`` gives the decoder's logits of p(x_k | x_<k, z)."""

    def __init__(self, params: PixelVAEParams, info: DataInfo) -> None:
        super().__init__("pixelvae", info)
        c, k, hidden = params.channels, params.kernel_size, params.hidden
        self.latent_dim = params.latent_dim
        self.encoder = mlp_trunk(self.d, [hidden, hidden], "relu")
        self.encoder_head = nn.Linear(hidden, 2 * self.latent_dim)
        self.z_net = nn.Sequential(
            nn.Linear(self.latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, Z_MAPS * self.d)
        )
        n = params.decoder_layers
        self.layers = nn.ModuleList(
            [GatedLayer(1 if i == 0 else c, c, k, i == 0, 0) for i in range(n)]
        )
        self.z_gates = nn.ModuleList([nn.Conv2d(Z_MAPS, 4 * c, 1) for _ in range(n)])
        self.z_head = nn.Conv2d(Z_MAPS, c, 1)
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, self.levels, 1)
        )

    # --- the networks ---

    def encode_index(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """q(z|x) of level indices (B, D): μ, log σ² (B, latent_dim) each."""
        u = self.net_input(idx).flatten(1)
        mean, log_var = self.encoder_head(self.encoder(u)).chunk(2, -1)
        return mean, log_var

    def net(self, u: Tensor, labels: Tensor | None) -> Tensor:
        """(B, 1, H', W) and z (B, latent_dim) (None: z = 0, the prior's mean) -> the
        logits (B, levels, H', W) of p(x_k | x_<k, z)."""
        z = labels if labels is not None else u.new_zeros(len(u), self.latent_dim)
        maps = self.z_net(z).view(len(u), Z_MAPS, self.h, self.w)[:, :, : u.shape[2]]
        v, h = u, u
        for layer, z_gate in zip(self.layers, self.z_gates, strict=True):
            v, h = layer(v, h, None, z_gate(maps))
        features = self.z_head(maps)
        if len(self.layers):
            features = features + h
        out: Tensor = self.head(features)
        return out

    # --- the bound ---

    def elbo_terms(self, idx: Tensor, gen: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """log p(x|z) for one z ~ q(z|x) (reparameterised) and KL(q(z|x) ‖ p(z)), each (B,)."""
        mean, log_var = self.encode_index(idx)
        eps = _normal(mean.shape, gen, mean.device)
        z = mean + (0.5 * log_var).exp() * eps
        return self.log_prob_index(idx, z), lik.gaussian_kl(mean, log_var)

    def training_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """−ELBO averaged over the minibatch (nats per image)."""
        recon, kl = self.elbo_terms(self.index(x))
        return -(recon - kl).mean()

    @torch.no_grad()
    def iwae(self, idx: Tensor, k: int, gen: torch.Generator | None) -> Tensor:
        """log (1/k) Σ_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x), per row (N,) (Burda et al.
        2016, eq. 8; k = 1: a one-sample ELBO); ``IW_ROWS`` decoder rows per pass."""
        out = []
        for block in idx.split(IW_ROWS):
            n = len(block)
            mean, log_var = self.encode_index(block)
            log_w = []
            chunk = max(1, IW_ROWS // n)
            for start in range(0, k, chunk):
                m = min(chunk, k - start)
                eps = _normal((m, n, self.latent_dim), gen, mean.device)
                z = (mean + (0.5 * log_var).exp() * eps).reshape(m * n, -1)  # row j·n + b
                lw = self.log_prob_index(block.repeat(m, 1), z) + lik.standard_normal_log_prob(z)
                lw = lw - lik.gaussian_log_prob(z, mean.repeat(m, 1), log_var.repeat(m, 1))
                log_w.append(lw.view(m, n))
            out.append(torch.logsumexp(torch.cat(log_w), 0) - math.log(k))
        return torch.cat(out)

    # --- sampling ---

    def sample(
        self, n: int, temperature: float, gen: torch.Generator, labels: Tensor | None = None
    ) -> Tensor:
        """n images (n, D): z ~ N(0, I) from ``gen``, then every pixel in raster order."""
        z = _normal((n, self.latent_dim), gen, self.device) if labels is None else labels
        return super().sample(n, temperature, gen, z)


def _normal(shape: tuple[int, ...] | torch.Size, gen: torch.Generator | None, dev: torch.device):
    """N(0, 1) of ``shape`` from ``gen`` (on its own device; a CPU generator serves any
    device) or the global generator, on ``dev``."""
    at = gen.device if gen is not None else dev
    return torch.randn(tuple(shape), generator=gen, device=at).to(dev)


def active_units(means: Tensor) -> int:
    """Units u whose Cov_x(E_q[z_u]) (the variance over the rows of the posterior means
    (N, latent_dim), unbiased) exceeds ``ACTIVE``: the latents the model uses."""
    return int((means.var(0) > ACTIVE).sum())


def build(params: PixelVAEParams, info: DataInfo) -> PixelVAE:
    """The model; data other than one-channel images with grey levels is a ValueError."""
    return PixelVAE(params, info)


# --- training --------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(module: PixelVAE, x: Tensor, split: str, seed: int) -> dict[str, float]:
    """``<split>_elbo``, ``_kl``, ``_recon`` (one fixed-noise z per image, nats per image)
    and ``<split>_active_units`` of the images x (N, D) in the data's units."""
    gen = torch.Generator().manual_seed(seed)
    recon, kl, means = [], [], []
    for xb in x.split(256):
        idx = module.index(xb.to(module.device))
        r, k = module.elbo_terms(idx, gen)
        recon.append(r)
        kl.append(k)
        means.append(module.encode_index(idx)[0])
    r_mean, kl_mean = float(torch.cat(recon).mean()), float(torch.cat(kl).mean())
    return {
        f"{split}_elbo": r_mean - kl_mean,
        f"{split}_kl": kl_mean,
        f"{split}_recon": r_mean,
        f"{split}_active_units": float(active_units(torch.cat(means))),
    }


def validate(module: PixelVAE, data: Dataset, seed: int) -> dict[str, float]:
    m = evaluate(module, data.x_val, "val", seed)
    m["active_units"] = m.pop("val_active_units")
    return m | {"val_loss": -m["val_elbo"]}


def test_metrics(module: PixelVAE, data: Dataset, k: int, seed: int) -> dict[str, float]:
    """The test split's ELBO, KL and active units, and the importance-weighted bound."""
    m = evaluate(module, data.x_test, "test", seed)
    idx = module.index(data.x_test.to(module.device))
    iw = module.iwae(idx, k, torch.Generator().manual_seed(seed))
    nll = -float(iw.mean())
    return m | {
        "test_iwae_nll": nll,
        "test_iwae_bpd": nll / (module.d * math.log(2)),
        "test_k": float(k),
    }


def fit(module: nn.Module, data: Dataset, params: PixelVAEParams, ctx: Context) -> None:
    """The ELBO by minibatches; each epoch the validation ELBO, KL and active units; at the
    end (the served weights) the test bound and the sampling time."""
    assert isinstance(module, PixelVAE)
    dev = ctx.device
    module.to(dev)
    x, y = data.x_train.to(dev).flatten(1), data.y_train.to(dev).long()
    opt = ctx.make_optimizer(module.parameters())
    finished = train_epochs(
        module, opt, x, y, ctx,
        loss_fn=module.training_loss,
        evaluate=lambda: validate(module, data, ctx.seed),
    )  # fmt: skip
    if finished:
        k = params.k_eval
        final_test(
            module, ctx, lambda: test_metrics(module, data, k, ctx.seed) | sampling_time(module)
        )


# --- inference (models/generative.py signatures) -----------------------------------------------


def _no_labels(labels: Tensor | None, field: str = "labels") -> None:
    if labels is not None:
        raise OptionError(field, "pixelvae is unconditional: leave labels out")


@torch.no_grad()
def log_prob(module: nn.Module, x: Tensor, labels: Tensor | None, k: int) -> LogProb:
    """The importance-weighted bound with ``k`` samples (noise from seed 0: same input,
    same answer); inputs must lie on the data's levels."""
    assert isinstance(module, PixelVAE)
    _no_labels(labels)
    module.check_inputs(x)
    module.eval()
    idx = module.index(x.to(module.device))
    return LogProb(module.iwae(idx, k, torch.Generator().manual_seed(0)), exact=False, k=k)


@torch.no_grad()
def encode(module: nn.Module, x: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
    """q(z|x): its ``mean`` and ``log_var`` (N, latent_dim) each."""
    assert isinstance(module, PixelVAE)
    _no_labels(labels)
    module.check_inputs(x)
    module.eval()
    mean, log_var = module.encode_index(module.index(x.to(module.device)))
    return {"mean": mean, "log_var": log_var}


@torch.no_grad()
def decode(module: nn.Module, z: Tensor, labels: Tensor | None) -> Tensor:
    """z (N, latent_dim) -> images (N, *input_shape) drawn from p(x|z) in raster order at
    temperature 1, each from uniforms seeded by its own z (the same z, the same image,
    wherever it stands in a request)."""
    assert isinstance(module, PixelVAE)
    _no_labels(labels)
    if z.dim() != 2 or z.shape[1] != module.latent_dim:
        raise OptionError("latents", f"latents have {module.latent_dim} values each")
    if not bool(torch.isfinite(z).all()):
        raise OptionError("latents", "latents must be finite")
    module.eval()
    z = z.float()
    uniforms = torch.stack([_uniforms_of(row, module.d) for row in z.cpu()])
    idx = torch.zeros(len(z), module.d, dtype=torch.long, device=module.device)
    for k in range(module.d):  # raster order, each pixel by the inverse CDF of its uniform
        r, c = divmod(k, module.w)
        rows = (r + 1) * module.w  # the rows pixel k can see
        logits = module.net(module.net_input(idx[:, :rows]), z.to(module.device))[:, :, r, c]
        cdf = torch.softmax(logits.float(), 1).cumsum(1)
        u = uniforms[:, k].to(module.device)
        idx[:, k] = (u[:, None] > cdf).sum(1).clamp(max=module.levels - 1)
    return module.from_index(idx).view(len(z), *module.info.input_shape)


def _uniforms_of(z: Tensor, d: int) -> Tensor:
    """d uniforms (d,) from a generator seeded by the bytes of one latent z: a decoded
    image depends on its z alone, not on the request or its place in it."""
    digest = hashlib.blake2b(z.numpy().tobytes(), digest_size=8).digest()
    return torch.rand(d, generator=torch.Generator().manual_seed(int.from_bytes(digest)))


def decode_rows(module: nn.Module) -> int:
    """The work of decoding one z: one pass per pixel over the rows it sees."""
    assert isinstance(module, PixelVAE)
    return module.sample_rows(1)


@torch.no_grad()
def complete(module: nn.Module, x: Tensor, observed: Tensor, opts: SampleOptions) -> Tensor:
    """x kept where ``observed`` (a raster prefix: the top rows; else ``Unsupported``, the
    API's 409), z drawn from p(z | observed) by resampling ``COMPLETE_PROPOSALS`` prior
    draws in proportion to p(observed | z) (the observed pixels' conditionals given z: a
    prefix's own, exact), then the rest in raster order given x's prefix and z."""
    assert isinstance(module, PixelVAE)
    n = len(x)
    if opts.label is not None:
        raise OptionError("label", "pixelvae is unconditional: leave label out")
    if observed.numel() != module.d:
        shape = list(module.info.input_shape)
        raise OptionError("inputs", f"inputs and observed have the data's shape {shape}")
    seen = observed.reshape(-1).bool().cpu()
    module.check_inputs(x, seen)
    if bool(seen.any()) and bool((~seen).any()):
        if int(seen.nonzero().max()) > int((~seen).nonzero().min()):
            _refuse_observed(FAMILY)
    weigh = bool(seen.any())
    proposals = COMPLETE_PROPOSALS * n * module.log_prob_rows() if weigh else 0
    _check_options(module, opts, module.fill_rows(n, ~seen) + proposals)
    module.eval()
    dev = module.device
    gen = opts.generator()
    idx = torch.where(seen.to(dev), module.index(x.to(dev)), 0)
    z = _normal((n, module.latent_dim), gen, dev)
    if weigh:
        z = _resample_latents(module, idx, seen, gen)
    done = module.fill(idx, ~seen, z, opts.temperature, gen)
    return module.from_index(done).view(n, *module.info.input_shape)


def _resample_latents(module: PixelVAE, idx: Tensor, seen: Tensor, gen: torch.Generator) -> Tensor:
    """One z per row from ``COMPLETE_PROPOSALS`` prior draws, drawn ∝ p(observed | z)."""
    n, m, dev = len(idx), COMPLETE_PROPOSALS, module.device
    mask = seen.to(dev).view(1, module.h, module.w)
    z = _normal((m, n, module.latent_dim), gen, dev)
    log_w = []
    for zs in z:  # one proposal for every row at a time
        logits = module.net(module.net_input(idx), zs)
        picked = -F.cross_entropy(logits, idx.view(n, module.h, module.w), reduction="none")
        log_w.append((picked * mask).sum((1, 2)))
    weights = torch.softmax(torch.stack(log_w, 1), 1)  # (n, m)
    pick = torch.multinomial(weights.cpu(), 1, generator=gen).squeeze(1).to(dev)
    return z[pick, torch.arange(n, device=dev)]


_decoder_field = receptive_field_capability()


def receptive_field(module: nn.Module, position: int) -> Tensor:
    """The decoder's (given z = 0): zero at the pixel and after it. A factorised decoder
    (``decoder_layers`` 0) reads no pixel: ``Unsupported``, the API's 409."""
    assert isinstance(module, PixelVAE)
    if not len(module.layers):
        raise Unsupported(
            FAMILY,
            "draw a receptive field",
            ": its decoder is factorised (decoder_layers 0), p(x_k | z) reads no pixel",
        )
    return _decoder_field(module, position)


def latent_dim(params: PixelVAEParams) -> int:
    return params.latent_dim


FAMILY: Family = Family(
    name="pixelvae",
    description="PixelVAE: a VAE whose decoder is a small gated PixelCNN conditioned on z "
    "(decoder_layers: 0 is a factorised decoder); ELBO with the KL and active units logged, "
    "importance-weighted log p bound, raster-order sampling",
    params=PixelVAEParams,
    datasets=DATASETS,
    capabilities={
        Capability.SAMPLE: sample_capability(),
        Capability.LOG_PROB: log_prob,
        Capability.ENCODE: encode,
        Capability.DECODE: Decoder(decode, latent_dim, rows=decode_rows),
        Capability.INTERPOLATE: latent_path,
        Capability.RECEPTIVE_FIELD: receptive_field,
        Capability.COMPLETE: complete,
    },
    build=build,
    fit=fit,
    # one pass of the decoder over the image's pixels per input and importance sample
    log_prob_passes=log_prob_rows,
    default_epochs=50,
    default_batch_size=64,
    default_log_prob_k=100,
    likelihood=LikelihoodReport("test_iwae_nll", "test_iwae_bpd", "bound", samples="test_k"),
)
