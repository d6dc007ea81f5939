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
    """x (B, D) -> ``k`` parameters per dimension (B, k, D) (``outputs``; ``forward`` reads
    k = 2 as (μ, α) (B, D) each, MAF's shifts and log scales), output i depending on x_j
    only for order[j] < order[i] (Germain et al. 2015: degrees, masks M = [m_out ≥ m_in],
    strict at the output).

    Hidden degrees are ``arange(h) % (D − 1) + 1``; ``set_masks(order, seed)`` rewrites
    the mask buffers for another order and, with a seed, hidden degrees drawn uniformly
    from [min degree of the layer below, D − 1] (connectivity-agnostic training, §4.2).
    With ``zero_init`` the last layer starts at zero, so a MAF layer built on it starts as
    the identity. State-dict keys: ``net.<k>.{weight,bias,mask}`` of an ``nn.Sequential``
    of ``MaskedLinear`` and activation layers (output row j·D + i: parameter j of dim i).
    """

    def __init__(
        self,
        order: Tensor,
        hidden: list[int],
        activation: ActivationName = "relu",
        *,
        k: int = 2,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        self.d, self.k, self.hidden = len(order), k, list(hidden)
        masks = made_masks(order, hidden, k)
        layers: list[nn.Module] = []
        for mask in masks[:-1]:
            layers += [MaskedLinear(mask.shape[1], mask.shape[0], mask), ACTIVATIONS[activation]()]
        last = MaskedLinear(masks[-1].shape[1], masks[-1].shape[0], masks[-1])
        if zero_init:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def masked_layers(self) -> list[MaskedLinear]:
        return [m for m in self.net if isinstance(m, MaskedLinear)]

    @torch.no_grad()
    def set_masks(self, order: Tensor, seed: int | None = None) -> None:
        """Rewrite every mask for ``order`` (hidden degrees drawn from ``seed`` if given)."""
        masks = made_masks(order, self.hidden, self.k, seed)
        for layer, mask in zip(self.masked_layers(), masks, strict=True):
            layer.mask.copy_(mask)

    def outputs(self, x: Tensor) -> Tensor:
        """(B, D) -> (B, k, D): parameter j of dimension i at [:, j, i]."""
        out: Tensor = self.net(x)
        return out.view(len(x), self.k, self.d)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, alpha = self.net(x).chunk(2, dim=1)
        return mu, alpha


def made_masks(
    order: Tensor, hidden: list[int], k: int = 1, seed: int | None = None
) -> list[Tensor]:
    """The 0/1 masks (out, in) of each layer for inputs in ``order`` (order[j]: the position
    of input j), the output's repeated for ``k`` parameters per dimension. Hidden degrees:
    ``arange(h) % (D − 1) + 1``, or with ``seed`` drawn uniformly from [the smallest degree
    of the layer below, D − 1] (Germain et al. 2015, §4.2 and §4.3)."""
    d, dev = len(order), order.device  # on the meta device too (parameters counted, no data)
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    degrees = [order + 1]  # input degree 1..D
    for h in hidden:
        if gen is None:
            degrees.append(torch.arange(h, device=dev) % max(1, d - 1) + 1)
        else:
            low = min(int(degrees[-1].min()), max(1, d - 1))
            degrees.append(
                torch.randint(low, max(1, d - 1) + 1, (h,), generator=gen, device="cpu").to(dev)
            )
    masks = [cur[:, None] >= prev[None, :] for prev, cur in itertools.pairwise(degrees)]
    out_mask = (order + 1)[:, None] > degrees[-1][None, :]
    return [m.float() for m in [*masks, out_mask.repeat(k, 1)]]
