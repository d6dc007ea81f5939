"""``gated_pixelcnn``: PixelCNN with vertical and horizontal stacks and gated units (van den
Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu 2016, "Conditional Image
Generation with PixelCNN Decoders", §2.1-2.3 and Figure 2).

The same autoregressive image model as ``pixelcnn``, p(x) = Π_k p(x_k | x_<k) in raster
order with a softmax over the data's grey levels per pixel ("output 8bit softmax"), without
its blind spot. Each layer keeps two stacks of feature maps:

- the **vertical stack** sees every pixel in the rows above: a (k // 2 + 1) × k convolution
  over the rows ≤ r (padding on top only), so at row r it has seen rows ≤ r, and it is
  moved one row down (``down_shift``) before the horizontal stack reads it: rows < r;
- the **horizontal stack** sees the pixels to the left on the pixel's own row: a
  1 × (k // 2 + 1) convolution ending at the pixel itself, except in the first layer,
  where the pixel is masked out (mask A);
- **gated units** y = tanh(W_f ∗ x + V_f h) ⊙ σ(W_g ∗ x + V_g h) in both stacks, with
  h = embedding(y) a per-layer class bias when ``conditional`` (§2.3, one-hot h);
- the **vertical-to-horizontal link**: a 1 × 1 conv of the (shifted) vertical features is
  added to the horizontal stack's pre-activations; the horizontal stack's gated output goes
  through a 1 × 1 conv and is added to its input (a residual, except in the first layer).

(The layer is ``models.nets.gated.GatedLayer``, shared with ``pixelvae``'s decoder.)

The vertical stack's field grows by k // 2 columns to either side per layer over the whole
region above, so every pixel above the current row within the stack's reach influences
it: no blind spot (``RECEPTIVE_FIELD`` shows it against ``pixelcnn``'s). The first layer's
kernel is 7 (as ``pixelcnn``'s), the ``layers`` after it use ``kernel_size``; the head is
ReLU, 1 × 1 conv, ReLU, 1 × 1 conv to the levels' logits, on the horizontal stack.

A ``conditional`` model learns p(x | y) and keeps the training class frequencies π: its
log-likelihood without labels is the exact marginal log Σ_y π_y p(x | y) (its ``test_nll``,
comparable with unconditional models; ``test_nll_given_label`` is −log p(x | y)).

Checkpoint ``state["model"]`` keys: ``layers.<i>.{v,h,link,h_out}.{weight,bias}``,
``layers.<i>.cond.weight`` (conditional: (classes, 4 · channels)), ``head.{1,3}.{weight,bias}``,
``log_pi`` (conditional: log class frequencies).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from torch import Tensor, nn

from models.data import DataInfo
from models.family import Family, Params
from models.nets.gated import GatedLayer
from models.pixel import (
    PixelDensity,
    pixel_family,
)

FIRST_KERNEL = 7  # the first layer's kernel, as pixelcnn's mask-A layer


class GatedPixelCNNParams(Params):
    channels: int = Field(64, ge=2, le=512, description="feature maps of each stack")
    layers: int = Field(5, ge=1, le=32, description="gated layers after the first one")
    kernel_size: int = Field(3, ge=3, le=11, description="odd kernel size of the later layers")
    conditional: bool = Field(
        False, description="condition on the class label (a learned bias of every gate)"
    )

    @model_validator(mode="after")
    def _odd(self) -> Self:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centre pixel), not {self.kernel_size}")
        return self


class GatedPixelCNN(PixelDensity):
    """A first gated layer (kernel 7, mask A on the horizontal stack), ``layers`` more
    (``kernel_size``, residual), a 1 × 1 head on the horizontal stack to ``levels`` logits."""

    def __init__(self, params: GatedPixelCNNParams, info: DataInfo) -> None:
        super().__init__("gated_pixelcnn", info, conditional=params.conditional)
        c, k = params.channels, params.kernel_size
        first = GatedLayer(1, c, FIRST_KERNEL, True, self.n_classes)
        rest = [GatedLayer(c, c, k, False, self.n_classes) for _ in range(params.layers)]
        self.layers = nn.ModuleList([first, *rest])
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, self.levels, 1)
        )

    def net(self, u: Tensor, labels: Tensor | None) -> Tensor:
        """(B, 1, H', W) -> logits (B, levels, H', W)."""
        if self.conditional and labels is None:
            raise ValueError("a conditional gated_pixelcnn needs labels")
        v, h = u, u
        for layer in self.layers:
            v, h = layer(v, h, labels if self.conditional else None)
        out: Tensor = self.head(h)
        return out


def build(params: GatedPixelCNNParams, info: DataInfo) -> GatedPixelCNN:
    """The model; data other than one-channel images with grey levels (or a conditional
    model on data without classes) is a ValueError."""
    return GatedPixelCNN(params, info)


FAMILY: Family = pixel_family(
    "gated_pixelcnn",
    "Gated PixelCNN: vertical and horizontal stacks with gated tanh·sigmoid "
    "units (no blind spot), optionally class-conditional, a softmax over grey levels per "
    "pixel, exact log p, raster-order sampling",
    GatedPixelCNNParams,
    build,
    default_epochs=50,
)
