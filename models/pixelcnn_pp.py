"""``pixelcnn_pp``: PixelCNN++ (Salimans, Karpathy, Chen & Kingma 2017, "PixelCNN++:
Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other
Modifications"), for one grey channel.

The same autoregressive image model as ``pixelcnn``, p(x) = Π_k p(x_k | x_<k) in raster
order, with the paper's changes (the notes, §7.1: "dropout / whole pixels / discretised
logistic mixture likelihood"):

- **the discretised logistic mixture** (``models.logistic_mixture``) instead of a softmax
  over the levels: 3 K outputs per pixel (K mixture logits, means, log scales), whatever
  the number of levels, and nearby levels share probability (a softmax learns each of 256
  levels on its own);
- **no masks but shifts**: two streams of feature maps, ``u`` (every pixel in the rows
  above) and ``ul`` (the rows above and the pixels to the left on the pixel's row), built
  from down-shifted (2 × 3 kernels over the row above and the row itself) and
  down-right-shifted (2 × 2) convolutions whose inputs are padded on top (and left), the
  first layer's outputs moved one row down (and one column right): no blind spot;
- **gated ResNet blocks**: x + a ⊙ σ(b), (a, b) = conv(dropout(concat_elu(conv(concat_elu(x))
  + nin(concat_elu(skip))))), concat_elu(x) = elu([x, −x]); the ``ul`` block also reads the
  ``u`` stream through the 1 × 1 ``nin`` (the paper's Figure 2);
- **downsampling and upsampling with short-cut connections**: ``stages`` resolutions
  (stride-2 shifted convolutions down, stride-2 transposed shifted convolutions up), every
  block of the up (first) pass kept and fed to its mirror in the down (second) pass, as in
  a U-net; the stride-2 kernels only read rows (and columns) that come before every pixel
  of the 2 × 2 block they stand for, so the shifts keep the order causal (tested by the
  Jacobian through both resamplings);
- **dropout** on the blocks' inner activations (``dropout``).

The number of stages follows the image: halve while both sides are even, at most 3 (8 × 8
``digits``: 8, 4, 2; 28 × 28 ``mnist5k``: 28, 14, 7). A forward on fewer rows (raster
sampling crops to the rows a pixel sees) pads the rows at the bottom to a multiple of
2^(stages − 1), which the rows above cannot see, and crops the output back. The head is
nin(elu(ul)) to the 3 K mixture parameters. The paper's weight normalisation with
data-dependent init and Polyak averaging are left out (Adam from PyTorch's default init;
the gated blocks' output convolution starts at 0.1 of it, as in the paper's code).

Checkpoint ``state["model"]`` keys: ``u_init.conv``, ``ul_init_row.conv``,
``ul_init_left.conv``; ``up_u.<i>`` / ``up_ul.<i>`` (the up pass: blocks and stride-2
convolutions in order), ``down_u.<i>`` / ``down_ul.<i>`` (the down pass: blocks and
transposed convolutions); a block's ``conv_in``, ``nin_skip`` and ``conv_out``;
``head.{weight,bias}``; each a ``{weight,bias}`` pair.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from models.data import DataInfo
from models.family import Family, Params
from models.logistic_mixture import (
    PARAMS_PER_COMPONENT,
    mixture_log_prob,
    sample_levels,
    split,
)
from models.pixel import (
    PixelDensity,
    down_shift,
    pixel_family,
)

MAX_STAGES = 3  # the paper's three resolutions (32, 16, 8 on CIFAR-10)
OUT_SCALE = 0.1  # the gated blocks' output convolution's initial scale (the paper's code)


class PixelCNNppParams(Params):
    filters: int = Field(32, ge=2, le=256, description="feature maps of both streams")
    nr_resnet: int = Field(1, ge=1, le=8, description="gated ResNet blocks per stage and pass")
    components: int = Field(5, ge=1, le=20, description="logistic mixture components K")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout rate inside the gated blocks")


def concat_elu(x: Tensor) -> Tensor:
    """elu([x, −x]) on the channels: (B, C, ...) -> (B, 2C, ...)."""
    return F.elu(torch.cat([x, -x], 1))


def right_shift(x: Tensor) -> Tensor:
    """(B, C, H, W) moved one column right (a zero column on the left)."""
    return F.pad(x, (1, 0))[..., :-1]


Shift = Literal["down", "down_right"]


class ShiftedConv(nn.Module):
    """A convolution over the rows above and the row itself (padding on top: kernel
    height − 1): ``down`` centred on the column (kernel width odd), ``down_right`` over the
    columns to the left and the column itself (padding on the left); ``stride`` 2 halves
    the size (output (i, j) reads input rows ≤ 2i and, for ``down_right``, columns ≤ 2j:
    all before the 2 × 2 block it stands for)."""

    def __init__(
        self, c_in: int, c_out: int, size: tuple[int, int], shift: Shift, stride: int = 1
    ) -> None:
        super().__init__()
        kh, kw = size
        left = kw - 1 if shift == "down_right" else (kw - 1) // 2
        right = 0 if shift == "down_right" else (kw - 1) // 2
        self.pad = (left, right, kh - 1, 0)
        self.conv = nn.Conv2d(c_in, c_out, size, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(F.pad(x, self.pad))
        return out


class ShiftedDeconv(nn.Module):
    """A stride-2 transposed convolution doubling the size: input (i, j) writes the output
    rows 2i, 2i + 1 (and for ``down`` the columns 2j − 1 .. 2j + 1, for ``down_right``
    2j, 2j + 1), none of them before the block it came from."""

    def __init__(self, c_in: int, c_out: int, shift: Shift) -> None:
        super().__init__()
        self.shift = shift
        size = (2, 3) if shift == "down" else (2, 2)
        self.conv = nn.ConvTranspose2d(c_in, c_out, size, stride=2, output_padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        out: Tensor = self.conv(x)  # (2H + 1, 2W + 2) down, (2H + 1, 2W + 1) down_right
        if self.shift == "down":
            return out[..., : 2 * h, 1 : 2 * w + 1]
        return out[..., : 2 * h, : 2 * w]


class GatedResnet(nn.Module):
    """x + a ⊙ σ(b): (a, b) = conv_out(dropout(concat_elu(conv_in(concat_elu(x)) +
    nin_skip(concat_elu(skip))))), the convolutions shifted as the stream's."""

    def __init__(self, filters: int, shift: Shift, skip_channels: int, dropout: float) -> None:
        super().__init__()
        size = (2, 3) if shift == "down" else (2, 2)
        self.conv_in = ShiftedConv(2 * filters, filters, size, shift)
        self.nin_skip = nn.Conv2d(2 * skip_channels, filters, 1) if skip_channels else None
        self.dropout = nn.Dropout(dropout)
        self.conv_out = ShiftedConv(2 * filters, 2 * filters, size, shift)
        with torch.no_grad():
            self.conv_out.conv.weight.mul_(OUT_SCALE)
            bias = self.conv_out.conv.bias
            assert bias is not None
            bias.zero_()

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        c = self.conv_in(concat_elu(x))
        if self.nin_skip is not None:
            assert skip is not None, "this block reads a short-cut"
            c = c + self.nin_skip(concat_elu(skip))
        a, b = self.conv_out(self.dropout(concat_elu(c))).chunk(2, 1)
        return x + a * torch.sigmoid(b)


def stage_count(h: int, w: int) -> int:
    """Resolutions: halve while both sides are even, at most ``MAX_STAGES``."""
    stages = 1
    while stages < MAX_STAGES and h % 2 == 0 and w % 2 == 0:
        h, w, stages = h // 2, w // 2, stages + 1
    return stages


class PixelCNNpp(PixelDensity):
    """Two shifted streams through ``stages`` resolutions up and back down (``nr_resnet``
    gated blocks per stage and pass, the up pass's outputs the down pass's short-cuts), a
    1 × 1 head to 3 K logistic mixture parameters per pixel."""

    def __init__(self, params: PixelCNNppParams, info: DataInfo) -> None:
        super().__init__("pixelcnn_pp", info)
        f, n, p = params.filters, params.nr_resnet, params.dropout
        self.components = params.components
        self.out_channels = PARAMS_PER_COMPONENT * params.components
        self.stages = stage_count(self.h, self.w)
        self.row_multiple = 2 ** (self.stages - 1)
        # the image and a channel of ones (which tells the image from the zero padding)
        self.u_init = ShiftedConv(2, f, (2, 3), "down")
        self.ul_init_row = ShiftedConv(2, f, (1, 3), "down")
        self.ul_init_left = ShiftedConv(2, f, (2, 1), "down_right")
        up_u: list[nn.Module] = []
        up_ul: list[nn.Module] = []
        down_u: list[nn.Module] = []
        down_ul: list[nn.Module] = []
        for stage in range(self.stages):
            if stage:
                up_u.append(ShiftedConv(f, f, (2, 3), "down", stride=2))
                up_ul.append(ShiftedConv(f, f, (2, 2), "down_right", stride=2))
            up_u += [GatedResnet(f, "down", 0, p) for _ in range(n)]
            up_ul += [GatedResnet(f, "down_right", f, p) for _ in range(n)]
        for stage in reversed(range(self.stages)):
            last = stage == self.stages - 1
            if not last:
                down_u.append(ShiftedDeconv(f, f, "down"))
                down_ul.append(ShiftedDeconv(f, f, "down_right"))
            blocks = n if last else n + 1  # the stride-2 conv's output too, but at the bottom
            down_u += [GatedResnet(f, "down", f, p) for _ in range(blocks)]
            down_ul += [GatedResnet(f, "down_right", 2 * f, p) for _ in range(blocks)]
        self.up_u, self.up_ul = nn.ModuleList(up_u), nn.ModuleList(up_ul)
        self.down_u, self.down_ul = nn.ModuleList(down_u), nn.ModuleList(down_ul)
        self.head = nn.Conv2d(f, self.out_channels, 1)

    def net(self, u: Tensor, labels: Tensor | None) -> Tensor:
        """(B, 1, H', W) in [−1, 1] -> the mixture parameters (B, 3K, H', W)."""
        rows = u.shape[2]
        pad = -rows % self.row_multiple  # rows below, which no row above can see
        x = F.pad(torch.cat([u, torch.ones_like(u)], 1), (0, 0, 0, pad))
        us = [down_shift(self.u_init(x))]
        uls = [down_shift(self.ul_init_row(x)) + right_shift(self.ul_init_left(x))]
        for block_u, block_ul in zip(self.up_u, self.up_ul, strict=True):
            if isinstance(block_u, GatedResnet):
                us.append(block_u(us[-1]))
                uls.append(block_ul(uls[-1], us[-1]))
            else:  # the stride-2 convolutions down to the next stage
                us.append(block_u(us[-1]))
                uls.append(block_ul(uls[-1]))
        h, hl = us.pop(), uls.pop()
        for block_u, block_ul in zip(self.down_u, self.down_ul, strict=True):
            if isinstance(block_u, GatedResnet):
                h = block_u(h, us.pop())
                hl = block_ul(hl, torch.cat([h, uls.pop()], 1))
            else:  # the transposed convolutions up to the next stage
                h, hl = block_u(h), block_ul(hl)
        assert not us and not uls, "every short-cut used once"
        out: Tensor = self.head(F.elu(hl))
        return out[:, :, :rows]

    # --- the discretised logistic mixture as the per-pixel distribution ---

    def pixel_log_probs(self, out: Tensor, target: Tensor) -> Tensor:
        logits, means, log_scales = split(out, self.components)
        return mixture_log_prob(target, logits, means, log_scales, self.levels)

    def draw(self, out: Tensor, temperature: float, gen: torch.Generator) -> Tensor:
        logits, means, log_scales = split(out, self.components)
        return sample_levels(logits, means, log_scales, self.levels, temperature, gen)

    def seen_pixels(self, k: int) -> int:
        """The rows down to pixel k's, padded to a multiple of 2^(stages − 1)."""
        rows = k // self.w + 1
        return (rows + -rows % self.row_multiple) * self.w


def build(params: PixelCNNppParams, info: DataInfo) -> PixelCNNpp:
    """The model; data other than one-channel images with grey levels is a ValueError."""
    return PixelCNNpp(params, info)


FAMILY: Family = pixel_family(
    "pixelcnn_pp",
    "PixelCNN++: a discretised logistic mixture per pixel, down- and "
    "down-right-shifted streams (no blind spot), gated ResNet blocks with dropout, "
    "downsampling and upsampling with short-cuts; exact log p, raster-order sampling",
    PixelCNNppParams,
    build,
    default_epochs=50,
)
