"""What the pixel families share (``pixelcnn``, ``gated_pixelcnn``, ``pixelrnn``):
p(x) = Π_k p(x_k | x_<k) over the pixels of an image in raster order (row by row, left to
right), each conditional a softmax over the data's grey levels (the notes, §7.1: "output
8bit softmax").

- ``MaskedConv2d``: a convolution whose kernel is multiplied by a fixed causal mask, mask A
  (the pixels above and to the left: a first layer, which must not see its own pixel) or
  mask B (the same plus the centre: every later layer, whose centre already only saw the
  past); the product is one elementwise multiply of the kernel per forward.
- Levels: an image in the data's units (0..``value_max``, ``levels`` equally spaced values)
  maps to level indices ``round(x / value_max · (levels − 1))`` (2 for ``*_bin``, 17 for
  ``digits``, 256 for ``mnist5k``); the network reads them scaled to [−1, 1] and gives
  ``levels`` logits per pixel, so log P(x) is the exact log-probability of the discrete
  image in nats (no dequantisation).
- ``PixelDensity``, the base of both families' modules: ``log_prob`` (a class-conditional
  model: log p(x | y), or without labels the exact marginal log Σ_y π_y p(x | y) with π the
  training class frequencies), the training loss, raster-order sampling and completion
  (one batched forward per pixel position, cropped to the rows the position can see), and
  the receptive field of one pixel by gradients.
- The per-pixel distribution is a softmax here; ``pixel_log_probs`` and ``draw`` are the
  hooks through which ``pixelcnn_pp`` puts its discretised logistic mixture instead.
- ``fit_pixels`` and ``evaluate`` (``val_nll``, ``test_nll`` in nats per image,
  ``*_bits_per_dim``), and the SAMPLE, LOG_PROB, RECEPTIVE_FIELD and COMPLETE capabilities.

Colour (``colour=True``, ``pixelrnn``): C channels per pixel, ordered R, G, B within a
pixel after every channel of the pixels before it (p(x) = Π_pixels Π_c p(x_{k,c} | x_<k,
x_{k,<c})); ``net`` then gives (B, levels, C, H', W) logits, and ``ColourMaskedConv2d``
splits the feature maps into C groups so the group of channel c sees channels < c of its
own pixel (mask A) or the groups ≤ c (mask B). The data's flat order stays the images'
(channel, row, column); positions are drawn and completed in the autoregressive order.
``pixelcnn`` and ``gated_pixelcnn`` are one channel only.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.data import DataInfo, Dataset
from models.family import EXACT_TEST_NLL, Capability, Context, Family, Params, Unsupported
from models.generative import (
    FIELD_PROBES,
    CompleteFn,
    LogProb,
    LogProbFn,
    OptionError,
    ReceptiveFieldFn,
    SampleFn,
    SampleOptions,
)
from models.loop import final_test, train_epochs

MaskKind = Literal["A", "B"]
LEVEL_TOLERANCE = 1e-3  # how far from a level (in level units) an input value may lie
CONV_SPEEDUP = 4  # pixels per dense-row equivalent of work (measured 5.5×; pass_rows)
TIMED_SAMPLES = 4  # images drawn at the final test to time sampling (the notes' "slow gen")


def causal_mask(height: int, width: int, kind: MaskKind) -> Tensor:
    """(height, width) 0/1: 1 above the centre row, and on the centre row left of the centre
    (mask A) or left of it and at it (mask B); 0 elsewhere."""
    mask = torch.zeros(height, width)
    r, c = height // 2, width // 2
    mask[:r] = 1
    mask[r, : c + (kind == "B")] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """A k × k convolution (padding k // 2: the size is kept) whose kernel is multiplied by
    ``causal_mask(k, k, kind)`` (a buffer, rebuilt with the module: not in the state dict)."""

    mask: Tensor

    def __init__(self, c_in: int, c_out: int, kernel_size: int, kind: MaskKind) -> None:
        super().__init__(c_in, c_out, kernel_size, padding=kernel_size // 2)
        self.kind = kind
        mask = causal_mask(kernel_size, kernel_size, kind)
        self.register_buffer("mask", mask[None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


def image_geometry(family: str, info: DataInfo, colour: bool = False) -> tuple[int, int, int]:
    """(height, width, levels) of a one-channel (or with ``colour``, a C-channel) image set
    with discrete levels; a ValueError (the API's 422) for other data."""
    if info.image_shape is None or info.levels is None or info.value_max is None:
        raise ValueError(f"{family} models images with discrete grey levels; {info.name} is not")
    if len(info.image_shape) != 3 or (info.image_shape[0] != 1 and not colour):
        raise ValueError(
            f"{family} models one-channel images; {info.name} has shape {info.image_shape}"
        )
    if info.levels < 2:
        raise ValueError(f"{family} needs at least 2 grey levels; {info.name} has {info.levels}")
    _, h, w = info.image_shape
    return h, w, info.levels


def colour_groups(n: int, colours: int) -> Tensor:
    """The colour group (0..colours − 1) of each of n feature maps: contiguous blocks."""
    return torch.arange(n) * colours // n


class ColourMaskedConv2d(nn.Conv2d):
    """A (kh, kw) convolution (padding kh // 2, kw // 2) causal over the pixels (the kernel
    positions above the centre row and left of the centre: ``causal_mask(kh, kw, "A")``)
    and over the colours at the centre: an output map of group g sees the input maps of
    groups < g there (mask A) or ≤ g (mask B), the groups given (``groups_in``,
    ``groups_out``) or contiguous blocks (``colour_groups``). One colour is ``MaskedConv2d``."""

    mask: Tensor

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: tuple[int, int],
        kind: MaskKind,
        colours: int,
        groups_in: Tensor | None = None,
        groups_out: Tensor | None = None,
        bias: bool = True,
    ) -> None:
        kh, kw = kernel
        super().__init__(c_in, c_out, kernel, padding=(kh // 2, kw // 2), bias=bias)
        g_in = colour_groups(c_in, colours) if groups_in is None else groups_in
        g_out = colour_groups(c_out, colours) if groups_out is None else groups_out
        centre = g_out[:, None] > g_in[None] if kind == "A" else g_out[:, None] >= g_in[None]
        mask = causal_mask(kh, kw, "A").expand(c_out, c_in, kh, kw).clone()
        mask[:, :, kh // 2, kw // 2] = centre.float()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


def down_shift(x: Tensor) -> Tensor:
    """(B, C, H, W) moved one row down (a zero row on top): row r then holds what row r − 1
    did, so a feature that saw rows ≤ r sees rows < r."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class PixelDensity(nn.Module):
    """Base of a pixel family's module: a subclass gives ``net(u, labels)``, the logits
    (B, levels, H', W) of every pixel of the network input u (B, 1, H', W) (level indices
    scaled to [−1, 1]; H' ≤ H rows: a causal net reads only rows above), whose logits at
    pixel k depend only on the pixels before k in raster order; with ``colour``, logits
    (B, levels, C, H', W) of u (B, C, H', W), channel c of pixel k depending only on the
    pixels before k and the channels < c of k. A subclass with another per-pixel
    distribution (``pixelcnn_pp``'s logistic mixture) sets ``out_channels`` (the net's
    outputs per pixel and channel, in place of the levels' logits) and overrides
    ``pixel_log_probs`` and ``draw``.

    A conditional model (``conditional``) takes class labels (B,) and keeps the training
    class frequencies π as the ``log_pi`` buffer: log p(x) = log Σ_y π_y p(x | y) exactly.
    """

    log_pi: Tensor

    def __init__(
        self, family: str, info: DataInfo, conditional: bool = False, colour: bool = False
    ) -> None:
        super().__init__()
        self.family, self.info = family, info
        self.h, self.w, self.levels = image_geometry(family, info, colour)
        assert info.image_shape is not None
        self.c = info.image_shape[0]  # channels (1 unless colour)
        self.pixels = self.h * self.w
        self.d = self.c * self.pixels
        self.value_max = float(info.value_max or 1.0)
        self.conditional = conditional
        self.out_channels = self.levels  # the net's outputs per pixel (a subclass may change it)
        self.n_classes = 0
        if conditional:
            if not info.n_classes:
                raise ValueError(f"conditional needs class labels; {info.name} has none")
            self.n_classes = k = info.n_classes
            self.register_buffer("log_pi", torch.full((k,), -math.log(k)))

    def net(self, u: Tensor, labels: Tensor | None) -> Tensor:
        raise NotImplementedError

    def logits(self, u: Tensor, labels: Tensor | None) -> Tensor:
        """``net``'s outputs as (B, out_channels, C, H', W) (C = 1 for a grey net's 4-d ones):
        the levels' logits unless a subclass says otherwise."""
        out = self.net(u, labels)
        return out.unsqueeze(2) if out.dim() == 4 else out

    def order(self, todo: Tensor) -> list[int]:
        """The flat positions (channel-major, the data's order) in ``todo`` (D,) bool in the
        autoregressive order: by pixel, then channel."""
        ks = todo.nonzero().squeeze(1).tolist()
        return sorted(ks, key=lambda k: (k % self.pixels, k // self.pixels))

    # --- the per-pixel distribution: a softmax over the levels unless a subclass says ---

    def pixel_log_probs(self, out: Tensor, target: Tensor) -> Tensor:
        """log p(x_k = target_k | x_<k) (B, C, H', W) from the net's outputs (B,
        out_channels, C, H', W) and level indices ``target`` (B, C, H', W): here log
        softmax(logits)[target]."""
        return -F.cross_entropy(out, target, reduction="none")

    def draw(self, out: Tensor, temperature: float, gen: torch.Generator) -> Tensor:
        """Level indices (n,) drawn from one pixel's outputs (n, out_channels) at
        ``temperature``: here softmax(logits / T), by the inverse CDF of one uniform per row
        from ``gen``."""
        n = len(out)
        cdf = torch.softmax(out.float() / temperature, 1).cumsum(1)  # (n, L)
        u = torch.rand(n, generator=gen, device=gen.device).to(out.device)
        return (u[:, None] > cdf).sum(1).clamp(max=self.levels - 1)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- data <-> level indices ---

    def index(self, x: Tensor) -> Tensor:
        """Data (B, ...) in its units -> level indices (B, D) int64."""
        v = x.reshape(len(x), -1).float() / self.value_max * (self.levels - 1)
        return v.round().clamp(0, self.levels - 1).long()

    def check_inputs(self, x: Tensor, observed: Tensor | None = None) -> None:
        """OptionError on ``inputs`` unless x is (N, ...) of D values on the data's levels
        (only where ``observed`` (D,) bool, when given)."""
        name = self.info.name
        if x.dim() < 1 or x[0].numel() != self.d:
            size = f"{self.h} × {self.w}" + (f", {self.c} channels each" if self.c > 1 else "")
            raise OptionError("inputs", f"{name} images have {self.d} pixels ({size})")
        v = x.reshape(len(x), -1).float() / self.value_max * (self.levels - 1)
        if observed is not None:
            v = v[:, observed.to(v.device)]
        off = ~torch.isfinite(v) | ((v - v.round()).abs() > LEVEL_TOLERANCE)
        off |= (v < -LEVEL_TOLERANCE) | (v > self.levels - 1 + LEVEL_TOLERANCE)
        if bool(off.any()):
            step = self.value_max / (self.levels - 1)
            raise OptionError(
                "inputs",
                f"{name} pixels are one of {self.levels} levels: multiples of {step:g} "
                f"from 0 to {self.value_max:g}",
            )

    def from_index(self, idx: Tensor) -> Tensor:
        """Level indices (B, D) -> data (B, D) in its units."""
        return idx.float() * (self.value_max / (self.levels - 1))

    def net_input(self, idx: Tensor) -> Tensor:
        """Level indices (B, C · rows · W) (or (B, C, rows, W)) -> the network's input
        (B, C, rows, W) in [−1, 1]."""
        u = idx.float() * (2.0 / (self.levels - 1)) - 1.0
        return u.reshape(len(idx), self.c, -1, self.w)

    # --- densities ---

    def log_prob_index(self, idx: Tensor, labels: Tensor | None) -> Tensor:
        """Σ_k log p(x_k | x_<k [, y]) (B,) of level indices (B, D)."""
        out = self.logits(self.net_input(idx), labels)  # (B, out_channels, C, H, W)
        target = idx.view(len(idx), self.c, self.h, self.w)
        return self.pixel_log_probs(out, target).sum((1, 2, 3))

    def class_log_probs(self, idx: Tensor) -> Tensor:
        """log p(x | y) for every class y (B, K) of a conditional model."""
        cols = [
            self.log_prob_index(idx, torch.full((len(idx),), y, device=idx.device))
            for y in range(self.n_classes)
        ]
        return torch.stack(cols, 1)

    def log_prob(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """log P(x) (B,) of images in the data's units: log p(x | y) with labels, else (for
        a conditional model) the marginal log Σ_y π_y p(x | y)."""
        idx = self.index(x)
        if not self.conditional or labels is not None:
            return self.log_prob_index(idx, labels)
        return torch.logsumexp(self.log_pi + self.class_log_probs(idx), 1)

    def training_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """−log p(x [| y]) averaged over the minibatch (nats per image)."""
        labels = y.long() if self.conditional else None
        return -self.log_prob_index(self.index(x), labels).mean()

    # --- sampling ---

    # --- work, for the API's bound (parameters × forward rows, models.generative) ---

    def pass_rows(self, pixels: int) -> int:
        """A pass of the network over ``pixels`` pixels, in the API's unit of work: forward
        rows of a dense model of the same parameters. A convolution applies each of its
        weights at every pixel, so the pass costs parameters × pixels multiply-adds; our
        convolutions run those about 5× as fast as a dense layer's (61 against 11 G/s on
        one core of the 2-core CI machine: PixelCNN sampling against the 25M-parameter
        dense forward that calibrates ``MAX_INFERENCE_WORK``), so a pixel counts as
        1 / ``CONV_SPEEDUP`` of a row."""
        return -(-pixels // CONV_SPEEDUP)

    def seen_pixels(self, k: int) -> int:
        """The pixels the pass for position k runs over: the rows down to its own (cropped)."""
        return ((k % self.pixels) // self.w + 1) * self.w

    def sample_rows(self, n: int) -> int:
        """Work of ``sample(n)``: one pass per pixel over the rows it can see, n images each."""
        return self.fill_rows(n, torch.ones(self.d, dtype=torch.bool))

    def fill_rows(self, n: int, todo: Tensor) -> int:
        """Work of ``fill`` drawing the pixels ``todo`` (D,) bool of n images."""
        pixels = sum(self.seen_pixels(k) for k in todo.nonzero().squeeze(1).tolist())
        return self.pass_rows(n * pixels)

    def log_prob_rows(self) -> int:
        """Work of one image's log-likelihood: a pass over the image (one per class for a
        conditional model's marginal)."""
        return self.pass_rows(self.pixels) * max(1, self.n_classes)

    @torch.no_grad()
    def fill(
        self,
        idx: Tensor,
        todo: Tensor,
        labels: Tensor | None,
        temperature: float,
        gen: torch.Generator,
    ) -> Tensor:
        """Level indices (n, D) with the positions in ``todo`` (D,) bool drawn in raster
        order (channels R, G, B within a pixel), each from its conditional given everything
        before it (``draw``: softmax of logits / T, by the inverse CDF of one uniform per row
        from ``gen``); the rest kept."""
        idx = idx.clone()
        n = len(idx)
        grid = idx.view(n, self.c, self.h, self.w)  # a view: drawn values land in idx
        for k in self.order(todo):
            ch, (r, c) = k // self.pixels, divmod(k % self.pixels, self.w)
            # the rows pixel k can see: a causal net needs no more
            out = self.logits(self.net_input(grid[:, :, : r + 1]), labels)[:, :, ch, r, c]
            idx[:, k] = self.draw(out, temperature, gen)
        return idx

    def sample(
        self, n: int, temperature: float, gen: torch.Generator, labels: Tensor | None = None
    ) -> Tensor:
        """n images (n, D) in the data's units, every pixel drawn in raster order."""
        idx = torch.zeros(n, self.d, dtype=torch.long, device=self.device)
        todo = torch.ones(self.d, dtype=torch.bool)
        return self.from_index(self.fill(idx, todo, labels, temperature, gen))

    # --- what influences one pixel ---

    def receptive_field(self, position: int) -> Tensor:
        """|∂ logits(position) / ∂ input| (D,) (position and D in the data's flat order:
        channel, row, column), summed over ``FIELD_PROBES`` fixed-seed random
        inputs (and labels), each pixel's logits projected on a fixed random direction: zero
        exactly where the input cannot influence the pixel (itself and all after it). The
        inputs are N(0, 2²), wider than the data's [−1, 1], so that more of a ReLU net's
        units are active in some probe (a unit dead in every probe hides its paths)."""
        dev = self.device
        ch, (r, c) = position // self.pixels, divmod(position % self.pixels, self.w)
        # autograd, also when called in the API's inference mode: tensors made outside it
        with torch.inference_mode(False), torch.enable_grad(), exact_zeros():
            gen = torch.Generator().manual_seed(0)
            u = torch.randn(FIELD_PROBES, self.c, self.h, self.w, generator=gen) * 2
            u = u.to(dev).requires_grad_()
            labels = None
            if self.conditional:
                labels = torch.randint(self.n_classes, (FIELD_PROBES,), generator=gen).to(dev)
            direction = torch.randn(FIELD_PROBES, self.out_channels, generator=gen).to(dev)
            out = self.logits(u, labels)[:, :, ch, r, c]
            (grad,) = torch.autograd.grad((out * direction).sum(), u)
        return grad.abs().sum(0).flatten().detach().cpu()


_EXACT_ZEROS_LOCK = threading.Lock()


@contextmanager
def exact_zeros() -> Iterator[None]:
    """Plain convolutions (no cuDNN) while a receptive field is computed on a GPU: their
    gradients are sums of products with the masked weights, exactly 0 where no path leads,
    where cuDNN's Winograd or FFT algorithms may leave rounding noise (on the CPU they are
    exact as they are). The flag is global, so the callers take turns (each restores what
    it found)."""
    with _EXACT_ZEROS_LOCK, torch.backends.cudnn.flags(enabled=False):
        yield


# --- training -------------------------------------------------------------------------------


def fit_pixels(module: PixelDensity, data: Dataset, ctx: Context) -> None:
    """Maximum likelihood with the shared loop (−log p(x [| y]) per image), validation NLL
    each epoch, the test NLL at the end; a conditional model first keeps the training class
    frequencies (its marginal's π)."""
    dev = ctx.device
    module.to(dev)
    x, y = data.x_train.to(dev).flatten(1), data.y_train.to(dev).long()
    if module.conditional:
        counts = torch.bincount(y, minlength=module.n_classes)[: module.n_classes].float()
        module.log_pi.copy_((counts / counts.sum()).log())
    opt = ctx.make_optimizer(module.parameters())
    finished = train_epochs(
        module, opt, x, y, ctx,
        loss_fn=module.training_loss,
        evaluate=lambda: evaluate(module, data, "val"),
    )  # fmt: skip
    if finished:
        final_test(module, ctx, lambda: {**evaluate(module, data, "test"), **sampling_time(module)})


def evaluate(module: PixelDensity, data: Dataset, split: str, batch: int = 256) -> dict[str, float]:
    """``<split>_nll`` (nats per image; a conditional model's the marginal, so it compares
    with unconditional ones), ``<split>_loss`` (the same), ``<split>_bits_per_dim``, and for
    a conditional model ``<split>_nll_given_label`` (−log p(x | y) with the true labels)."""
    x = data.x_val if split == "val" else data.x_test
    y = data.y_val if split == "val" else data.y_test
    dev = module.device
    marginal, given = [], []
    with torch.no_grad():
        for xb, yb in zip(x.split(batch), y.split(batch), strict=True):
            idx = module.index(xb.to(dev))
            if module.conditional:
                per_class = module.class_log_probs(idx)  # (B, K)
                marginal.append(torch.logsumexp(module.log_pi + per_class, 1))
                given.append(per_class.gather(1, yb.to(dev).long()[:, None]).squeeze(1))
            else:
                marginal.append(module.log_prob_index(idx, None))
    nll = float(-torch.cat(marginal).mean())
    out = {
        f"{split}_nll": nll,
        f"{split}_loss": nll,
        f"{split}_bits_per_dim": nll / (module.d * math.log(2)),
    }
    if given:
        out[f"{split}_nll_given_label"] = float(-torch.cat(given).mean())
    return out


def sampling_time(module: PixelDensity, n: int = TIMED_SAMPLES) -> dict[str, float]:
    """``sample_seconds_per_image``: wall seconds per image of drawing n images at
    temperature 1 (a conditional model: classes from the training frequencies), one
    sequential pass per pixel, so the notes' "slow gen" is a number on every job."""
    gen = torch.Generator().manual_seed(0)
    labels = None
    if module.conditional:
        labels = torch.multinomial(module.log_pi.exp().cpu(), n, replacement=True, generator=gen)
        labels = labels.to(module.device)
    start = time.perf_counter()
    module.sample(n, 1.0, gen, labels)
    return {"sample_seconds_per_image": (time.perf_counter() - start) / n}


# --- inference ------------------------------------------------------------------------------


def _labels_for(module: PixelDensity, label: int | None, n: int) -> Tensor | None:
    """``label`` for n rows of a conditional model (None: left to the caller); OptionError on
    ``label`` for an unconditional model given one or a label out of range."""
    if not module.conditional:
        if label is not None:
            raise OptionError("label", f"{module.family} is unconditional: leave label out")
        return None
    if label is None:
        return None
    if not 0 <= label < module.n_classes:
        raise OptionError("label", f"label {label} is not a class (0..{module.n_classes - 1})")
    return torch.full((n,), label, dtype=torch.long, device=module.device)


def _check_options(module: PixelDensity, opts: SampleOptions, rows: int) -> None:
    if opts.temperature <= 0:
        raise OptionError("temperature", "temperature must be positive")
    if opts.max_rows is not None and rows > opts.max_rows:  # the request's bound on work
        most = opts.max_rows * opts.n // max(rows, 1)
        raise OptionError(
            "n", f"{opts.n} images take {rows} forward rows (sequential); at most {most}"
        )


def log_prob_rows(module: nn.Module) -> int:
    """The family's ``log_prob_passes``: the work of one image's log-likelihood."""
    assert isinstance(module, PixelDensity)
    return module.log_prob_rows()


def sample_capability() -> SampleFn:
    """SAMPLE: n images in raster order at ``temperature`` (logits / T); a conditional model
    draws class ``label``, or without one each image's class from the training frequencies."""

    def sample(module: nn.Module, opts: SampleOptions) -> Tensor:
        assert isinstance(module, PixelDensity)
        labels = _labels_for(module, opts.label, opts.n)
        _check_options(module, opts, module.sample_rows(opts.n))
        module.eval()
        gen = opts.generator()
        if module.conditional and labels is None:
            pi = module.log_pi.exp().cpu()
            labels = torch.multinomial(pi, opts.n, replacement=True, generator=gen)
            labels = labels.to(module.device)
        x = module.sample(opts.n, opts.temperature, gen, labels)
        return x.view(opts.n, *module.info.input_shape)

    return sample


def log_prob_capability() -> LogProbFn:
    """LOG_PROB, exact: log P(x) of the discrete images in nats (inputs must lie on the data's
    levels); a conditional model gives log p(x | y) with labels, the marginal without.
    ``k`` is unused (nothing is sampled)."""

    def log_prob(module: nn.Module, x: Tensor, labels: Tensor | None, k: int) -> LogProb:
        assert isinstance(module, PixelDensity)
        if labels is not None:
            if not module.conditional:
                raise OptionError("labels", f"{module.family} is unconditional: leave labels out")
            if labels.shape != (len(x),):
                raise OptionError("labels", f"give one label per input ({len(x)})")
            if bool(((labels < 0) | (labels >= module.n_classes)).any()):
                raise OptionError("labels", f"labels are classes 0..{module.n_classes - 1}")
            labels = labels.to(module.device).long()
        module.check_inputs(x)
        module.eval()
        with torch.no_grad():
            return LogProb(module.log_prob(x.to(module.device), labels), exact=True)

    return log_prob


def receptive_field_capability() -> ReceptiveFieldFn:
    """RECEPTIVE_FIELD: the gradient magnitudes of one pixel's logits w.r.t. the input image,
    in the data's shape (flat H · W); zero at the pixel itself and after it."""

    def receptive_field(module: nn.Module, position: int) -> Tensor:
        assert isinstance(module, PixelDensity)
        if not 0 <= position < module.d:
            raise OptionError("position", f"pixels are 0..{module.d - 1} (row · {module.w} + col)")
        module.eval()
        return module.receptive_field(position).view(module.info.input_shape)

    return receptive_field


def complete_capability(record: Callable[[], Family]) -> CompleteFn:
    """COMPLETE: x (N, ...) kept where ``observed``, every other pixel drawn in raster order
    from its conditional given all pixels before it (``temperature``, the seeded generator).
    The observed pixels must come before all the others in raster order (the top rows of
    an image, a raster prefix): each completion is then an exact draw from
    p(rest | observed). Any other observed set would need the late observed pixels summed
    out: refused with ``Unsupported`` (the API's 409; ``record`` gives the family's record,
    which it names). A conditional model completes as class
    ``label``; without one, each row's class is drawn from its posterior
    π_y p(observed | y) (the product of the observed pixels' conditionals), so the draw is
    exact for the marginal model too."""

    def complete(module: nn.Module, x: Tensor, observed: Tensor, opts: SampleOptions) -> Tensor:
        assert isinstance(module, PixelDensity)
        n = len(x)
        labels = _labels_for(module, opts.label, n)
        if observed.numel() != module.d:
            shape = list(module.info.input_shape)
            raise OptionError("inputs", f"inputs and observed have the data's shape {shape}")
        seen = observed.reshape(-1).bool().cpu()
        module.check_inputs(x, seen)
        if bool(seen.any()) and bool((~seen).any()):
            rank = torch.empty(module.d, dtype=torch.long)  # each position's autoregressive rank
            rank[module.order(torch.ones(module.d, dtype=torch.bool))] = torch.arange(module.d)
            if int(rank[seen].max()) > int(rank[~seen].min()):
                _refuse_observed(record())
        weigh = module.conditional and labels is None and bool(seen.any())
        posterior = n * module.log_prob_rows() if weigh else 0  # p(observed | y) for each y
        _check_options(module, opts, module.fill_rows(n, ~seen) + posterior)
        module.eval()
        gen = opts.generator()
        idx = torch.where(seen.to(module.device), module.index(x.to(module.device)), 0)
        if module.conditional and labels is None:
            if weigh:
                labels = _posterior_labels(module, idx, seen, gen)
            else:  # nothing observed: the classes' prior
                pi = module.log_pi.exp().cpu()
                labels = torch.multinomial(pi, n, replacement=True, generator=gen)
                labels = labels.to(module.device)
        done = module.fill(idx, ~seen, labels, opts.temperature, gen)
        return module.from_index(done).view(n, *module.info.input_shape)

    return complete


def _refuse_observed(family: Family) -> None:
    raise Unsupported(
        family,
        "complete these inputs",
        ": an exact completion needs every observed pixel before every unobserved one in "
        "raster order (the top rows of an image observed)",
    )


@torch.no_grad()
def _posterior_labels(
    module: PixelDensity, idx: Tensor, seen: Tensor, gen: torch.Generator
) -> Tensor:
    """One class per row drawn ∝ π_y Π_{k observed} p(x_k | x_<k, y)."""
    shape = (len(idx), module.c, module.h, module.w)
    mask = seen.to(idx.device).view(shape[1:])
    cols = []
    for y in range(module.n_classes):
        labels = torch.full((len(idx),), y, device=idx.device)
        out = module.logits(module.net_input(idx), labels)
        picked = module.pixel_log_probs(out, idx.view(shape))
        cols.append((picked * mask).sum((1, 2, 3)))
    posterior = torch.softmax(module.log_pi + torch.stack(cols, 1), 1)  # (N, K)
    return torch.multinomial(posterior.cpu(), 1, generator=gen).squeeze(1).to(idx.device)


PIXEL_DATASETS = frozenset({"digits_bin", "digits", "mnist5k_bin", "mnist5k"})


def pixel_family(
    name: str,
    description: str,
    params: type[Params],
    build: Callable[[Any, DataInfo], PixelDensity],
    *,
    default_epochs: int = 50,
) -> Family:
    """The record of an autoregressive pixel family trained by ``fit_pixels``: the four
    image sets, SAMPLE, exact LOG_PROB, RECEPTIVE_FIELD and COMPLETE from the factories
    above, ranked on the leaderboard by its exact test NLL. ``build`` makes the module."""

    def fit(module: nn.Module, data: Dataset, _: Params, ctx: Context) -> None:
        assert isinstance(module, PixelDensity)
        fit_pixels(module, data, ctx)

    def this() -> Family:  # the record a completion's 409 names
        return record

    record = Family(
        name=name,
        description=description,
        params=params,
        datasets=PIXEL_DATASETS,
        capabilities={
            Capability.SAMPLE: sample_capability(),
            Capability.LOG_PROB: log_prob_capability(),
            Capability.RECEPTIVE_FIELD: receptive_field_capability(),
            Capability.COMPLETE: complete_capability(this),
        },
        likelihood=EXACT_TEST_NLL,
        # one pass over the image's pixels per input; per class for a conditional marginal
        log_prob_passes=log_prob_rows,
        build=build,
        fit=fit,
        default_epochs=default_epochs,
        default_batch_size=64,
    )
    return record
