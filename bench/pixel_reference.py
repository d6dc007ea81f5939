"""A plain PixelCNN written here, the reference our ``pixelcnn`` family's epoch time is
measured against (``python -m bench.likelihoods --timing``).

The same net as ``models/pixelcnn.py`` (a 7 × 7 mask-A convolution, ``layers`` residual
blocks of 1 × 1, k × k mask B, 1 × 1, a two-layer 1 × 1 head to one logit per level),
written the way a tutorial writes it: masks multiplied into the kernels on every forward,
the levels read as x scaled to [−1, 1], cross-entropy over levels, Adam, shuffled
minibatches, and the validation NLL after each epoch (which our ``fit`` computes too).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.context import LocalContext
from models.data import Dataset
from models.optim import OptimizerSpec
from models.registry import get_family


def mask(k: int, centre: bool) -> Tensor:
    m = torch.zeros(k, k)
    m[: k // 2] = 1
    m[k // 2, : k // 2 + centre] = 1
    return m


class Masked(nn.Conv2d):
    def __init__(self, c_in: int, c_out: int, k: int, centre: bool) -> None:
        super().__init__(c_in, c_out, k, padding=k // 2)
        self.register_buffer("m", mask(k, centre))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.m, self.bias, padding=self.padding)


class Block(nn.Module):
    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c // 2, 1)
        self.b = Masked(c // 2, c // 2, k, True)
        self.c = nn.Conv2d(c // 2, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.c(F.relu(self.b(F.relu(self.a(F.relu(x))))))


class PlainPixelCNN(nn.Module):
    def __init__(self, channels: int, layers: int, kernel_size: int, levels: int) -> None:
        super().__init__()
        self.first = Masked(1, channels, 7, False)
        self.blocks = nn.Sequential(*(Block(channels, kernel_size) for _ in range(layers)))
        self.head1 = nn.Conv2d(channels, channels, 1)
        self.head2 = nn.Conv2d(channels, levels, 1)

    def forward(self, u: Tensor) -> Tensor:
        h = self.blocks(self.first(u))
        return self.head2(F.relu(self.head1(F.relu(h))))


def plain_epochs(data: Dataset, params: dict[str, Any], epochs: int, batch: int) -> float:
    """Wall seconds of ``epochs`` epochs of the plain loop (validation after each)."""
    shape = data.info.image_shape
    assert shape is not None and data.info.levels is not None
    levels, top = data.info.levels, float(data.info.value_max or 1.0)

    def prepare(x: Tensor) -> tuple[Tensor, Tensor]:
        idx = (x / top * (levels - 1)).round().long().view(-1, *shape)
        return idx[:, 0], idx.float() / (levels - 1) * 2 - 1

    net = PlainPixelCNN(params["channels"], params["layers"], params["kernel_size"], levels)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    target, u = prepare(data.x_train)
    val_target, val_u = prepare(data.x_val)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for rows in torch.randperm(len(u), generator=gen).split(batch):
            loss = F.cross_entropy(net(u[rows]), target[rows], reduction="sum") / len(rows)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            sum(
                float(F.cross_entropy(net(vu), vt, reduction="sum"))
                for vu, vt in zip(val_u.split(512), val_target.split(512), strict=True)
            )
    return time.perf_counter() - start


def ours_epochs(data: Dataset, params: dict[str, Any], epochs: int, batch: int) -> float:
    """Wall seconds of ``epochs`` epochs of our family's ``fit`` (it validates each epoch;
    its final test pass is excluded by timing an epoch budget on no test rows)."""
    family = get_family("pixelcnn")
    p = family.params(**params)
    module = family.build(p, data.info)
    no_test = Dataset(data.info, data.x_train, data.y_train, data.x_val, data.y_val,
                      data.x_test[:1], data.y_test[:1])  # fmt: skip
    ctx = LocalContext(epochs=epochs, batch_size=batch, optimizer=OptimizerSpec(name="adam"))
    start = time.perf_counter()
    family.fit(module, no_test, p, ctx)
    return time.perf_counter() - start


def compare_epoch_time(data: Dataset, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Ours against the plain loop, alternating, each warmed by a short run first; the
    median of ``repeats`` one-epoch timings per side."""
    params = {"channels": 8 if quick else 32, "layers": 1 if quick else 5, "kernel_size": 3}
    batch = 64
    if quick:
        n = 256
        data = Dataset(data.info, data.x_train[:n], data.y_train[:n], data.x_val[:64],
                       data.y_val[:64], data.x_test[:64], data.y_test[:64])  # fmt: skip
    small = Dataset(data.info, data.x_train[:128], data.y_train[:128], data.x_val[:64],
                    data.y_val[:64], data.x_test[:64], data.y_test[:64])  # fmt: skip
    ours_epochs(small, params, 1, batch)  # warm-up: both sides once
    plain_epochs(small, params, 1, batch)
    ours_s, plain_s = [], []
    for _ in range(repeats):
        ours_s.append(ours_epochs(data, params, 1, batch))
        plain_s.append(plain_epochs(data, params, 1, batch))
    ours, plain = statistics.median(ours_s), statistics.median(plain_s)
    return {
        "params": params,
        "batch_size": batch,
        "ours_runs": ours_s,
        "plain_runs": plain_s,
        "ours_seconds": ours,
        "plain_seconds": plain,
        "ratio": ours / plain,
    }
