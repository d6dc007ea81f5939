"""``pixelcnn``: masked convolutions over the pixels in raster order (van den Oord,
Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks", §3.5 and Figure 5).

An autoregressive image model p(x) = Π_k p(x_k | x_<k) (the notes, §7.1) whose conditionals
all come out of one pass of a convolutional network whose kernels are masked
(``models.pixel.MaskedConv2d``): a 7 × 7 mask-A convolution (the pixels above and to the
left, not the pixel itself), then ``layers`` residual blocks (ReLU, 1 × 1 conv to half the
channels, ReLU, ``kernel_size`` × ``kernel_size`` mask-B conv (which may also see the
centre, whose features only saw the past), ReLU, 1 × 1 conv back, plus the block's input),
then ReLU, 1 × 1 conv, ReLU, 1 × 1 conv to one logit per grey level and pixel: a softmax over
the data's levels (2, 17 or 256), so log P(x) is exact. Training maximises it in one pass;
sampling is sequential, one batched pass per pixel.

The blind spot (the notes: "worse than RNN cause blind spot"): a mask-B kernel reaches one
row up and ``kernel_size // 2`` columns to either side, but on its own row only to the
left. A path through the stack moves right only on its steps up, so j rows above the pixel
it reaches at most 3 + (j − 1) · (``kernel_size // 2``) columns to the right (the first
layer's step up may move 3): a triangle above and to the right of the pixel is never seen
however deep the stack, though those pixels come before it in raster order (and a
recurrent PixelRNN sees them).
``gated_pixelcnn`` removes it with separate vertical and horizontal stacks.
``RECEPTIVE_FIELD`` shows it: the gradient of one pixel's logits w.r.t. the input image.

Checkpoint ``state["model"]`` keys: ``first.{weight,bias}`` (the 7 × 7 mask-A conv),
``blocks.<i>.{reduce,conv,expand}.{weight,bias}``, ``head.{1,3}.{weight,bias}`` (the
masks are rebuilt from the architecture, not stored).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from torch import Tensor, nn

from models.data import DataInfo
from models.family import Family, Params
from models.pixel import (
    MaskedConv2d,
    PixelDensity,
    pixel_family,
)

FIRST_KERNEL = 7  # the mask-A layer's kernel (the paper's 7 × 7)


class PixelCNNParams(Params):
    channels: int = Field(64, ge=2, le=512, description="feature maps of every layer")
    layers: int = Field(5, ge=1, le=32, description="mask-B residual blocks after the first layer")
    kernel_size: int = Field(
        3, ge=3, le=11, description="odd kernel size of the mask-B convolutions"
    )

    @model_validator(mode="after")
    def _odd(self) -> Self:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centre pixel), not {self.kernel_size}")
        return self


class ResidualBlock(nn.Module):
    """The paper's residual block (Figure 5): x + 1×1(ReLU(k×k mask B(ReLU(1×1(ReLU x)))))."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        half = max(1, channels // 2)
        self.reduce = nn.Conv2d(channels, half, 1)
        self.conv = MaskedConv2d(half, half, kernel_size, "B")
        self.expand = nn.Conv2d(half, channels, 1)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(self.act(self.reduce(self.act(x))))
        return x + self.expand(self.act(h))


class PixelCNN(PixelDensity):
    """Mask A 7 × 7, ``layers`` mask-B residual blocks, a 1 × 1 head to ``levels`` logits."""

    def __init__(self, params: PixelCNNParams, info: DataInfo) -> None:
        super().__init__("pixelcnn", info)
        c = params.channels
        self.first = MaskedConv2d(1, c, FIRST_KERNEL, "A")
        self.blocks = nn.Sequential(
            *(ResidualBlock(c, params.kernel_size) for _ in range(params.layers))
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, self.levels, 1)
        )

    def net(self, u: Tensor, labels: Tensor | None) -> Tensor:
        """(B, 1, H', W) -> logits (B, levels, H', W)."""
        out: Tensor = self.head(self.blocks(self.first(u)))
        return out


def build(params: PixelCNNParams, info: DataInfo) -> PixelCNN:
    """The model; data other than one-channel images with grey levels is a ValueError."""
    return PixelCNN(params, info)


FAMILY: Family = pixel_family(
    "pixelcnn",
    "PixelCNN: masked convolutions (7×7 mask A, mask-B residual blocks), a "
    "softmax over grey levels per pixel, exact log p, raster-order sampling; has the blind spot",
    PixelCNNParams,
    build,
    default_epochs=50,
)
