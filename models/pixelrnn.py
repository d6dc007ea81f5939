"""``pixelrnn``: two-dimensional LSTMs over the pixels in raster order (van den Oord,
Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks", §3.1-3.4, Figures 2-4).

The autoregressive image model of ``pixelcnn``, p(x) = Π_k p(x_k | x_<k) in raster order
with a softmax over the data's levels per pixel (the notes, §7.1: "sequential order over
rows", "conditionals by LSTMs", "slow train and gen, but good gen"), whose conditionals
come out of recurrent layers:

- a 7 × 7 **mask-A** convolution of the input (the pixels above and to the left, not the
  pixel itself) to 2h feature maps (h = ``hidden``, the LSTM state's channels);
- ``layers`` **residual** recurrent layers, each ending in a 1 × 1 mask-B convolution from
  the h state maps back to 2h, added to the layer's input (§3.3);
- ReLU, 1 × 1 mask-B conv, ReLU, 1 × 1 mask-B conv to ``levels`` logits per pixel and
  channel: log P(x) is exact.

The LSTM of both layers: [o, f, i, g] = [σ, σ, σ, tanh](K^ss ⊛ h_prev + K^is ⊛ x),
c = f ⊙ c_prev + i ⊙ g, h = o ⊙ tanh(c), the input-to-state convolution K^is masked and
computed for the whole map at once, the state-to-state one K^ss unmasked (its inputs are
all earlier pixels), run step by step:

- **Row LSTM** (§3.1, ``layer: row_lstm``): one row at a time, top to bottom; K^is a
  masked 1 × 3 convolution along the row (the pixel to the left and the pixel itself,
  mask B), K^ss a 1 × 3 convolution of the previous row's state. Row r's state at column c
  sees columns c − 1 .. c + 1 of row r − 1, so its field over the rows above is a
  **triangle** widening by one column each side per row up: "the Row LSTM has a
  triangular receptive field" (§3.1, Figure 4), which misses pixels to the right that come
  before the pixel in raster order (far up and near, where the 7 × 7 input conv does not
  reach), and on its own row it sees only the few pixels the masked convolutions reach.
- **Diagonal BiLSTM** (§3.2, ``layer: diagonal_bilstm``): the input map is **skewed** (row
  i moved i columns right, n × n -> n × (2n − 1)), so each diagonal of the image is one
  column; a column LSTM runs left to right with a 1 × 1 K^is (mask B) and a 2 × 1 K^ss
  over the previous column's state at rows i − 1 and i, i.e. the pixel above and the pixel
  to the left in the unskewed map, which is **unskewed** after. That stream sees every
  pixel above and to the left (the quadrant r' ≤ r, c' ≤ c); a second stream runs on the
  mirrored map (right to left: the quadrant r' ≤ r, c' ≥ c) and its output is **shifted
  down one row** before it is added, so it sees rows < r only and no future pixel leaks.
  Together: every previous pixel, "the Diagonal BiLSTM has a complete receptive field"
  (Figure 4), no blind spot at any depth.

  One addition to the paper's description: the right-to-left stream's input-to-state also
  reads the image's own pixel (a 1 × 1 convolution of the network input, all channels,
  ``rl.pixel_in``). Its features come from the mask-A input convolution, so the feature
  at (r − 1, c') knows the pixels before (r − 1, c') but not that pixel itself; the last
  pixel of the row above, (r − 1, W − 1), is then in no feature the pixel (r, c) reads
  (for c < W − 4, out of the 7 × 7 reach) at any depth: a one-pixel blind spot, which the
  receptive-field test found. The stream's output is read one row down, where every
  channel of row r − 1 is in the past, so reading the pixel leaks nothing.

Colour (§3.4): with C channels (R, G, B) the feature maps are split into C groups; a mask A
convolution gives group c the input channels < c of the pixel itself, mask B the groups
≤ c (``models.pixel.ColourMaskedConv2d``), the LSTM gates keep the groups of their units,
and the logits of channel c come from group c: R is conditioned on the previous pixels, G
also on R, B on R and G. No built-in data set has colour; a synthetic one is tested.

Cost: both layers are sequential, H row steps (Row LSTM) or H + W − 1 column steps per
direction (Diagonal BiLSTM) of small matrix products, which a CPU runs several times as
slowly per multiply-add as a convolution over the whole map: ``RNN_SPEEDUP`` counts it in
the API's bound on work. Sampling is one such pass per pixel and channel, over the rows
down to the pixel's ("slow gen"; ``sample_seconds_per_image`` is logged at the final test).

Checkpoint ``state["model"]`` keys: ``first.{weight,bias}`` (the 7 × 7 mask-A conv),
``layers.<i>.{is_conv,out}.{weight,bias}``, ``layers.<i>.ss.weight`` (Row LSTM), or
``layers.<i>.{lr,rl}.is_conv.{weight,bias}``, ``layers.<i>.{lr,rl}.ss.weight``,
``layers.<i>.rl.pixel_in.weight``, ``layers.<i>.out.{weight,bias}`` (Diagonal BiLSTM),
``head.{1,3}.{weight,bias}`` (the masks are rebuilt from the architecture, not stored).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from models.data import DataInfo
from models.family import Family, Params
from models.pixel import (
    ColourMaskedConv2d,
    PixelDensity,
    colour_groups,
    down_shift,
    pixel_family,
)

FIRST_KERNEL = 7  # the mask-A input convolution (the paper's 7 × 7)
# The work of a recurrent pass in the API's unit (multiply-adds of the dense forward that
# calibrates MAX_INFERENCE_WORK), measured on one thread of the 2-core CI machine under
# load (bench: docs/models.md, pixelrnn): per pixel, the parameters' multiply-adds times
# how much slower than a dense layer the pass runs them (2.2-3.8x for the Row LSTM,
# 8-21x for the Diagonal BiLSTM, whose skewed map is up to twice the image), and a fixed
# cost per sequential LSTM step (one row, or one column of one stream), the time of a
# step of a tiny model (~50 and ~200 µs) at the dense rate (14.5 G/s)
RNN_SLOWDOWN: dict[str, int] = {"row_lstm": 4, "diagonal_bilstm": 16}
STEP_MACS: dict[str, int] = {"row_lstm": 1_000_000, "diagonal_bilstm": 3_000_000}

Layer = Literal["row_lstm", "diagonal_bilstm"]


class PixelRNNParams(Params):
    layer: Layer = Field(
        "diagonal_bilstm",
        description="row_lstm (rows top to bottom, a triangular receptive field) or "
        "diagonal_bilstm (skewed diagonals both ways, every previous pixel)",
    )
    hidden: int = Field(32, ge=2, le=256, description="LSTM state channels h (2h between layers)")
    layers: int = Field(2, ge=1, le=12, description="residual recurrent layers")


def lstm_cell(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Pre-activations (B, 4h, ...) as [o, f, i, g] and the cell c (B, h, ...) -> (h, c)."""
    o, f, i, g = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gate_groups(hidden: int, colours: int) -> Tensor:
    """The colour group of each of the 4h gate pre-activations: that of its unit."""
    return colour_groups(hidden, colours).repeat(4)


def skew(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, H, W + H − 1), row i moved i columns right (zeros around):
    the image's diagonals r + c = j become the columns j."""
    b, c, h, w = x.shape
    flat = F.pad(x, (0, h)).flatten(2)[:, :, : h * (w + h - 1)]
    return flat.view(b, c, h, w + h - 1)


def unskew(x: Tensor, w: int) -> Tensor:
    """``skew``'s inverse: (B, C, H, W + H − 1) -> (B, C, H, W)."""
    b, c, h, _ = x.shape
    return F.pad(x.flatten(2), (0, h)).view(b, c, h, w + h)[..., :w]


class RowLSTM(nn.Module):
    """x (B, 2h, H, W) -> x + 1×1(h_rows): the rows' LSTM, top to bottom (§3.1)."""

    def __init__(self, hidden: int, colours: int) -> None:
        super().__init__()
        self.hidden = hidden
        groups = gate_groups(hidden, colours)
        self.is_conv = ColourMaskedConv2d(2 * hidden, 4 * hidden, (1, 3), "B", colours,
                                          groups_out=groups)  # fmt: skip
        self.ss = nn.Conv1d(hidden, 4 * hidden, 3, padding=1, bias=False)
        self.out = ColourMaskedConv2d(hidden, 2 * hidden, (1, 1), "B", colours)

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        pre = self.is_conv(x)  # (B, 4h, H, W): the whole map at once
        b, _, rows, w = pre.shape
        h = c = x.new_zeros(b, self.hidden, w)
        states = []
        for r in range(rows):
            h, c = lstm_cell(pre[:, :, r] + self.ss(h), c)
            states.append(h)
        out: Tensor = x + self.out(torch.stack(states, 2))
        return out


class DiagonalLSTM(nn.Module):
    """One stream of the Diagonal BiLSTM: x (B, 2h, H, W) -> states (B, h, H, W), each the
    LSTM over the skewed map's columns (left to right) with the previous column's state at
    rows i − 1 and i (the pixels above and to the left). With ``pixels`` (the image's
    channels; the right-to-left stream, read one row down) its input-to-state also reads
    the image's own pixel, all channels (``pixel_in``)."""

    def __init__(self, hidden: int, colours: int, pixels: int = 0) -> None:
        super().__init__()
        self.hidden = hidden
        groups = gate_groups(hidden, colours)
        self.is_conv = ColourMaskedConv2d(2 * hidden, 4 * hidden, (1, 1), "B", colours,
                                          groups_out=groups)  # fmt: skip
        self.ss = nn.Conv1d(hidden, 4 * hidden, 2, bias=False)  # rows i − 1, i
        self.pixel_in = nn.Conv2d(pixels, 4 * hidden, 1, bias=False) if pixels else None

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        pre = self.is_conv(x)
        if self.pixel_in is not None:
            pre = pre + self.pixel_in(u)
        pre = skew(pre)  # (B, 4h, H, W + H − 1)
        b, _, rows, cols = pre.shape
        h = c = x.new_zeros(b, self.hidden, rows)
        states = []
        for j in range(cols):
            h, c = lstm_cell(pre[..., j] + self.ss(F.pad(h, (1, 0))), c)
            states.append(h)
        return unskew(torch.stack(states, 3), x.shape[3])


class DiagonalBiLSTM(nn.Module):
    """x (B, 2h, H, W) -> x + 1×1(left-to-right + the right-to-left stream shifted down one
    row) (§3.2); u (B, C, H, W) the network's input (the right-to-left stream's own pixels)."""

    def __init__(self, hidden: int, colours: int) -> None:
        super().__init__()
        self.lr = DiagonalLSTM(hidden, colours)
        self.rl = DiagonalLSTM(hidden, colours, pixels=colours)
        self.out = ColourMaskedConv2d(hidden, 2 * hidden, (1, 1), "B", colours)

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        # row r saw rows ≤ r (its own pixels too): shifted down, rows < r
        right_to_left = self.rl(x.flip(3), u.flip(3)).flip(3)
        out: Tensor = x + self.out(self.lr(x, u) + down_shift(right_to_left))
        return out


class PixelRNN(PixelDensity):
    """Mask A 7 × 7, ``layers`` residual Row LSTM or Diagonal BiLSTM layers, a mask-B 1 × 1
    head to ``levels`` logits per channel."""

    def __init__(self, params: PixelRNNParams, info: DataInfo) -> None:
        super().__init__("pixelrnn", info, colour=True)
        h, colours, self.layer = params.hidden, self.c, params.layer
        self.first = ColourMaskedConv2d(
            colours, 2 * h, (FIRST_KERNEL, FIRST_KERNEL), "A", colours,
            groups_in=torch.arange(colours),
        )  # fmt: skip
        cls = RowLSTM if params.layer == "row_lstm" else DiagonalBiLSTM
        self.layers = nn.ModuleList(cls(h, colours) for _ in range(params.layers))
        logit_groups = torch.arange(colours).repeat_interleave(self.levels)
        self.head = nn.Sequential(
            nn.ReLU(),
            ColourMaskedConv2d(2 * h, 2 * h, (1, 1), "B", colours),
            nn.ReLU(),
            ColourMaskedConv2d(2 * h, colours * self.levels, (1, 1), "B", colours,
                               groups_out=logit_groups),
        )  # fmt: skip
        self.n_params = sum(p.numel() for p in self.parameters())  # for the work counts

    def net(self, u: Tensor, labels: Tensor | None) -> Tensor:
        """(B, C, H', W) -> logits (B, levels, C, H', W)."""
        x = self.first(u)
        for layer in self.layers:
            x = layer(x, u)
        out: Tensor = self.head(x)
        b, _, rows, w = out.shape
        return out.view(b, self.c, self.levels, rows, w).transpose(1, 2)

    def steps(self, rows: int) -> int:
        """Sequential LSTM steps of a pass over ``rows`` rows: one per row and layer (Row
        LSTM), or per column of the skewed map, stream and layer (Diagonal BiLSTM)."""
        per_layer = rows if self.layer == "row_lstm" else 2 * (self.w + rows - 1)
        return per_layer * len(self.layers)

    def pass_work(self, n: int, rows: int) -> int:
        """A pass over n images' first ``rows`` rows in dense rows of this model: its
        parameters' multiply-adds at each pixel, ``RNN_SLOWDOWN`` times a dense layer's
        cost, plus ``STEP_MACS`` a sequential step (shared by the batch)."""
        pixels = n * rows * self.w * RNN_SLOWDOWN[self.layer]
        return pixels + -(-self.steps(rows) * STEP_MACS[self.layer] // self.n_params)

    def pass_rows(self, pixels: int) -> int:
        """A pass over ``pixels`` pixels (whole rows) of one batch: ``pass_work``."""
        return self.pass_work(1, -(-pixels // self.w))

    def fill_rows(self, n: int, todo: Tensor) -> int:
        """Work of drawing the positions ``todo`` (D,) of n images: a pass per position
        over the rows down to its own."""
        rows = [(k % self.pixels) // self.w + 1 for k in todo.nonzero().squeeze(1).tolist()]
        return sum(self.pass_work(n, r) for r in rows)


def build(params: PixelRNNParams, info: DataInfo) -> PixelRNN:
    """The model; data other than images with discrete levels is a ValueError."""
    return PixelRNN(params, info)


FAMILY: Family = pixel_family(
    "pixelrnn",
    "PixelRNN: a mask-A 7×7 conv, residual Row LSTM (triangular field) or "
    "Diagonal BiLSTM (skewed diagonals, every previous pixel) layers, a softmax over the "
    "levels per pixel (and channel, R→G→B), exact log p, raster-order sampling",
    PixelRNNParams,
    build,
    default_epochs=30,
)
