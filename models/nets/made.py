"""MADE: masked autoencoder for distribution estimation (Germain et al. 2015, "MADE:
Masked Autoencoder for Distribution Estimation").

A fully connected network whose weights are multiplied by fixed binary masks so that
output i depends only on the inputs that precede i in a chosen order: every unit gets
a degree (inputs 1..D in the order, hidden units 1..D−1), a connection is kept where
the receiving unit's degree is at least the sending one's (M = [m_out ≥ m_in]), and
strictly greater at the output. One pass then gives every conditional of an
autoregressive model; MAF (Papamakarios et al. 2017) reads them as shifts and log
scales.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.layers import ACTIVATIONS, ActivationName


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight (out, in) is multiplied by a fixed 0/1 ``mask`` buffer."""

    mask: Tensor

    def __init__(self, d_in: int, d_out: int, mask: Tensor) -> None:
        super().__init__(d_in, d_out)
        self.register_buffer("mask", mask.float())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """x (B, D) -> (μ, α) (B, D) each, output i depending on x_j only for order[j] < order[i]
    (Germain et al. 2015: degrees, masks M = [m_out ≥ m_in], strict at the output).

    The last layer starts at zero, so a MAF layer built on it starts as the identity.
    State-dict keys: ``net.<k>.{weight,bias,mask}`` of an ``nn.Sequential`` of
    ``MaskedLinear`` and activation layers.
    """

    def __init__(
        self, order: Tensor, hidden: list[int], activation: ActivationName = "relu"
    ) -> None:
        super().__init__()
        d = len(order)
        degrees = [order + 1]  # input degree 1..D
        for h in hidden:
            degrees.append(torch.arange(h) % max(1, d - 1) + 1)
        layers: list[nn.Module] = []
        for prev, cur in itertools.pairwise(degrees):
            mask = cur[:, None] >= prev[None, :]
            layers += [MaskedLinear(len(prev), len(cur), mask), ACTIVATIONS[activation]()]
        out_mask = (order + 1)[:, None] > degrees[-1][None, :]
        last = MaskedLinear(len(degrees[-1]), 2 * d, out_mask.repeat(2, 1))
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, alpha = self.net(x).chunk(2, dim=1)
        return mu, alpha
