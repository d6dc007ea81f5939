"""The gated PixelCNN layer (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves &
Kavukcuoglu 2016, "Conditional Image Generation with PixelCNN Decoders", §2.1-2.3 and
Figure 2), shared by ``gated_pixelcnn`` and ``pixelvae``'s decoder.

One layer keeps two stacks of feature maps:

- the **vertical stack** sees every pixel in the rows above: a (k // 2 + 1) × k convolution
  over the rows ≤ r (padding on top only), moved one row down (``down_shift``) before the
  horizontal stack reads it: rows < r;
- the **horizontal stack** sees the pixels to the left on the pixel's own row: a
  1 × (k // 2 + 1) convolution ending at the pixel itself, except in the first layer,
  where the pixel is masked out (mask A);
- **gated units** y = tanh(W_f ∗ x + V_f h) ⊙ σ(W_g ∗ x + V_g h) in both stacks; V h is
  a per-layer class bias (``n_classes``: an embedding, §2.3's one-hot h) and/or any
  ``bias`` map the caller adds to the pre-activations (§2.3's location-dependent
  conditioning, s = m(h): ``pixelvae``'s latent z), neither of which reads the image;
- the **vertical-to-horizontal link**: a 1 × 1 conv of the (shifted) vertical features is
  added to the horizontal stack's pre-activations; the horizontal stack's gated output goes
  through a 1 × 1 conv and is added to its input (a residual, except in the first layer).

Parameter names (a family's checkpoint keys under its layer's prefix): ``{v,h,link,h_out}.
{weight,bias}``, ``cond.weight`` (with classes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.pixel import down_shift


def gate(x: Tensor) -> Tensor:
    """(B, 2C, H, W) -> tanh(first half) ⊙ σ(second half) (B, C, H, W)."""
    f, g = x.chunk(2, 1)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedLayer(nn.Module):
    """One layer of both stacks (Figure 2): (v, h, labels[, bias]) -> (v', h')."""

    h_mask: Tensor

    def __init__(self, c_in: int, channels: int, k: int, first: bool, n_classes: int) -> None:
        super().__init__()
        self.k, self.first, c2 = k, first, 2 * channels
        self.channels = channels
        self.v = nn.Conv2d(c_in, c2, (k // 2 + 1, k))  # rows r − k//2 .. r
        self.h = nn.Conv2d(c_in, c2, (1, k // 2 + 1))  # columns c − k//2 .. c
        mask = torch.ones(1, 1, 1, k // 2 + 1)
        if first:
            mask[..., -1] = 0  # mask A: not the pixel itself
        self.register_buffer("h_mask", mask, persistent=False)
        self.link = nn.Conv2d(c2, c2, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.cond = nn.Embedding(n_classes, 2 * c2) if n_classes else None

    def forward(
        self, v: Tensor, h: Tensor, labels: Tensor | None, bias: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``bias``: (B, 4 · channels, H', W) or (B, 4 · channels, 1, 1), the vertical
        stack's pre-activations' share first, the horizontal's second; it must not depend
        on the image (it is added at every pixel as it is)."""
        k = self.k
        v_pre = self.v(F.pad(v, (k // 2, k // 2, k // 2, 0)))  # (B, 2C, H, W): rows ≤ r
        h_conv = self.h._conv_forward(
            F.pad(h, (k // 2, 0)), self.h.weight * self.h_mask, self.h.bias
        )
        h_pre = h_conv + self.link(down_shift(v_pre))  # the vertical stack: rows < r
        if self.cond is not None:
            assert labels is not None, "a conditional layer needs labels"
            bias_v, bias_h = self.cond(labels)[:, :, None, None].chunk(2, 1)
            v_pre, h_pre = v_pre + bias_v, h_pre + bias_h
        if bias is not None:
            bias_v, bias_h = bias.chunk(2, 1)
            v_pre, h_pre = v_pre + bias_v, h_pre + bias_h
        h_new = self.h_out(gate(h_pre))
        return gate(v_pre), h_new if self.first else h + h_new
