"""``pixelrnn`` (Row LSTM and Diagonal BiLSTM): the skew and unskew of the Diagonal BiLSTM,
the autoregressive property by the Jacobian (double precision, random weights, grey and
R, G, B images), the receptive fields (the Row LSTM's triangle, the Diagonal BiLSTM's every
previous pixel) against hand-drawn grids and a reachability count of the layers' wiring,
exact normalisation over every image of tiny grey and colour sets, sampling and completion
against the model's own probabilities, the work the API bounds, and a tiny fit. The generic
pixel-family tests (tests/models/test_pixelcnn.py CASES) also run both layers."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from models.context import LocalContext
from models.data import DataInfo
from models.family import Capability, Unsupported
from models.generative import SampleOptions
from models.pixel import PixelDensity, colour_groups, evaluate
from models.pixelrnn import (
    FAMILY,
    RNN_SLOWDOWN,
    STEP_MACS,
    Layer,
    PixelRNN,
    PixelRNNParams,
    skew,
    unskew,
)
from tests.support.data import tiny
from tests.support.densities import all_images, image_info

LAYERS: list[Layer] = ["row_lstm", "diagonal_bilstm"]


def model(info: DataInfo, layer: Layer, hidden: int = 4, layers: int = 2) -> PixelRNN:
    """A small random model, its last layer sharpened (conditionals far from uniform)."""
    torch.manual_seed(0)
    module = FAMILY.build(PixelRNNParams(layer=layer, hidden=hidden, layers=layers), info)
    assert isinstance(module, PixelRNN)
    with torch.no_grad():
        last = module.head[-1]
        assert isinstance(last, torch.nn.Conv2d)
        last.weight.mul_(3.0)
        assert last.bias is not None
        last.bias.normal_()
    return module.eval()


def colour_info(h: int, w: int, levels: int = 2) -> DataInfo:
    """Synthetic R, G, B images (no built-in set has colour), flat in (channel, row, col)."""
    return DataInfo(
        name=f"rgb{h}x{w}",
        task="classification",
        input_shape=(3 * h * w,),
        target_dim=1,
        n_classes=2,
        n_train=0,
        image_shape=(3, h, w),
        levels=levels,
        value_max=1.0,
    )


def test_skew_makes_the_diagonals_columns_and_unskew_undoes_it() -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4)
    assert skew(x)[0, 0].tolist() == [
        [0, 1, 2, 3, 0, 0],
        [0, 4, 5, 6, 7, 0],
        [0, 0, 8, 9, 10, 11],
    ]  # column j holds the pixels with r + c = j
    y = torch.randn(2, 5, 4, 7)
    assert torch.equal(unskew(skew(y), 7), y)
    assert torch.equal(unskew(skew(y.transpose(2, 3)), 4), y.transpose(2, 3))  # H > W


def test_colour_groups_and_masks() -> None:
    assert colour_groups(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    first = model(colour_info(4, 4), "row_lstm", hidden=3).first
    centre = first.mask[:, :, 3, 3]  # (2h = 6 maps, R G B): group g sees channels < g
    assert centre.tolist() == [[0, 0, 0]] * 2 + [[1, 0, 0]] * 2 + [[1, 1, 0]] * 2
    assert first.mask[:, :, 3, 4:].sum() == 0 and first.mask[:, :, 4:].sum() == 0
    assert first.mask[:, :, :3].all() and first.mask[:, :, 3, :3].all()


def influence(module: PixelDensity, u: torch.Tensor) -> torch.Tensor:
    """(D, D) bool: does the input value j change the logits of position k (flat, the
    data's channel-major order), by the Jacobian in double precision."""
    module = module.double()
    shape = (1, module.c, module.h, module.w)
    jac = jacobian(lambda v: module.logits(v.view(shape), None)[0].flatten(1), u.double())
    return jac.abs().sum(0) > 0  # [position k, input j]


@pytest.mark.parametrize("layer", LAYERS)
def test_logits_depend_only_on_earlier_pixels(layer: Layer) -> None:
    """5 × 6 grey images, 3 levels: ∂ logits(k) / ∂ x_j = 0 for every j ≥ k in raster order;
    every pixel after the first depends on some earlier one."""
    module = model(image_info(5, 6, levels=3), layer)
    u = torch.rand(30, generator=torch.Generator().manual_seed(1)) * 2 - 1
    seen = influence(module, u)
    assert not bool(seen[torch.ones(30, 30).triu().bool()].any())
    assert bool(seen.tril(-1).any(1)[1:].all())


@pytest.mark.parametrize("layer", LAYERS)
def test_colour_channels_are_conditioned_r_then_g_then_b(layer: Layer) -> None:
    """A 3-channel 4 × 4 synthetic set: R of pixel k depends on no channel of pixel k, G on
    its R only, B on its R and G; nothing of any later pixel; all on earlier pixels."""
    module = model(colour_info(4, 4), layer, hidden=6)
    u = torch.rand(48, generator=torch.Generator().manual_seed(2)) * 2 - 1
    seen = influence(module, u).view(3, 16, 3, 16)  # [channel, pixel k, channel, pixel j]
    for k in range(16):
        own = seen[:, k, :, k]  # [output channel, input channel] at the same pixel
        assert own.tolist() == [[False] * 3, [True, False, False], [True, True, False]], k
        assert not bool(seen[:, k, :, k + 1 :].any())
        if k > 0:
            assert bool(seen[:, k, :, :k].any(2).all())  # each channel sees earlier pixels


def drawn(grid: str) -> tuple[torch.Tensor, int, int]:
    rows = grid.strip().splitlines()
    flat = "".join(rows)
    field = torch.tensor([ch == "#" for ch in flat]).view(len(rows), -1)
    return field, flat.index("o"), len(rows[0])


# The receptive field of pixel o = (6, 7) of a 7 × 16 image, one Row LSTM layer: "#" influences
# it. Rows above: the 7 × 7 input convolution reaches 3 columns either side 3 rows up, the
# row state's 1 × 3 convolution one more column each side per row up: the paper's triangle
# ("the Row LSTM has a triangular receptive field", §3.1, Figure 4); (5, 12) .. (5, 15) and
# (6, 0) .. (6, 2) come before o but never reach it.
ROW_LSTM_FIELD = """
################
###############.
##############..
#############...
.###########....
..#########.....
...####o........
"""
# The same pixel, one Diagonal BiLSTM layer: every pixel before it ("complete", Figure 4).
DIAGONAL_FIELD = """
################
################
################
################
################
################
#######o........
"""


def wiring_field(
    h: int, w: int, layer: str, layers: int, r0: int, c0: int, own_pixel: bool = True
) -> torch.Tensor:
    """The pixels that reach (r0, c0) along the layers' connections (independent of the
    model's code): the 7 × 7 mask A, then per layer the Row LSTM's state (r, c) <- input
    (r, c − 1 .. c), state (r − 1, c − 1 .. c + 1), or the Diagonal BiLSTM's left-to-right
    state (r, c) <- input (r, c), states (r − 1, c), (r, c − 1), the right-to-left one
    mirrored (and, ``own_pixel``, the image's pixel (r, c)), and its state (r − 1, c)
    added; a residual and 1 × 1 convolutions after."""
    none = torch.zeros(h, w, dtype=torch.bool)

    def grid() -> list[list[torch.Tensor]]:
        return [[none] * w for _ in range(h)]

    def at(m: list[list[torch.Tensor]], r: int, c: int) -> torch.Tensor:
        return m[r][c] if 0 <= r < h and 0 <= c < w else none

    x = grid()
    for r in range(h):
        for c in range(w):
            f = none.clone()
            f[max(r - 3, 0) : r, max(c - 3, 0) : c + 4] = True
            f[r, max(c - 3, 0) : c] = True
            x[r][c] = f
    for _ in range(layers):
        out, a, b = grid(), grid(), grid()
        for r in range(h):
            for c in range(w):
                if layer == "row_lstm":
                    a[r][c] = at(x, r, c - 1) | x[r][c]
                    a[r][c] = a[r][c] | at(a, r - 1, c - 1) | at(a, r - 1, c) | at(a, r - 1, c + 1)
                else:
                    a[r][c] = x[r][c] | at(a, r - 1, c) | at(a, r, c - 1)
            for c in reversed(range(w)):
                b[r][c] = x[r][c] | at(b, r - 1, c) | at(b, r, c + 1)
                if own_pixel:
                    b[r][c] = b[r][c].clone()
                    b[r][c][r, c] = True
        for r in range(h):
            for c in range(w):
                out[r][c] = x[r][c] | a[r][c]
                if layer == "diagonal_bilstm":
                    out[r][c] = out[r][c] | at(b, r - 1, c)
        x = out
    return x[r0][c0]


@pytest.mark.parametrize(("layer", "grid"), [("row_lstm", ROW_LSTM_FIELD),
                                             ("diagonal_bilstm", DIAGONAL_FIELD)])  # fmt: skip
def test_the_receptive_fields_the_paper_draws(layer: Layer, grid: str) -> None:
    expected, position, w = drawn(grid)
    h = len(expected)
    module = model(image_info(h, w), layer, layers=1)
    field = FAMILY.capability(Capability.RECEPTIVE_FIELD)(module, position)
    seen = (field > 0).view(h, w)
    assert torch.equal(seen, expected), seen.int()
    r, c = divmod(position, w)
    assert torch.equal(seen, wiring_field(h, w, layer, 1, r, c))
    if layer == "diagonal_bilstm":  # without rl.pixel_in (the paper's words read literally)
        for layers in (1, 3):  # the last pixel of the row above is missed at any depth
            literal = wiring_field(h, w, layer, layers, r, c, own_pixel=False)
            assert (expected & ~literal).nonzero().tolist() == [[r - 1, w - 1]]


@pytest.mark.parametrize("layers", [1, 3])
def test_the_diagonal_bilstm_sees_every_previous_pixel(layers: int) -> None:
    """No blind spot at any depth or position of a 9 × 7 image, corners and edges included;
    the Row LSTM's field (checked against the wiring) misses some."""
    h, w = 9, 7
    diagonal = model(image_info(h, w), "diagonal_bilstm", layers=layers)
    row = model(image_info(h, w), "row_lstm", layers=layers)
    field = FAMILY.capability(Capability.RECEPTIVE_FIELD)
    missed = 0
    for position in (1, 6, 7, 13, 30, 34, 56, 62):
        before = (torch.arange(h * w) < position).view(h, w)
        assert torch.equal((field(diagonal, position) > 0).view(h, w), before), position
        seen_row = (field(row, position) > 0).view(h, w)
        r, c = divmod(position, w)
        assert torch.equal(seen_row, wiring_field(h, w, "row_lstm", layers, r, c)), position
        assert not bool((seen_row & ~before).any())
        missed += int((before & ~seen_row).sum())
    assert missed > 0


def _log_probs(module: PixelDensity, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module.log_prob(x)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize(
    ("info", "d", "levels"),
    [(image_info(2, 2), 4, 2), (image_info(2, 3, levels=3), 6, 3), (colour_info(1, 2), 6, 2)],
    ids=["2x2-binary", "2x3-3-levels", "rgb-1x2-binary"],
)
def test_probabilities_sum_to_one(layer: Layer, info: DataInfo, d: int, levels: int) -> None:
    module = model(info, layer)
    log_p = _log_probs(module, all_images(d, levels))
    assert log_p.shape == (levels**d,) and bool((log_p < 0).all())
    torch.testing.assert_close(torch.logsumexp(log_p, 0), torch.tensor(0.0), atol=1e-5, rtol=0)


def codes(x: torch.Tensor) -> torch.Tensor:
    """Binary images (N, D) -> their index in ``all_images(D, 2)``."""
    return (x.round().long() * 2 ** torch.arange(x.shape[1] - 1, -1, -1)).sum(1)


@pytest.mark.parametrize("layer", LAYERS)
def test_colour_samples_and_completions_follow_the_model(layer: Layer) -> None:
    """R, G, B images of 1 × 2 binary pixels (64 images): sampling draws each as often as
    exp(log_prob) says (the channels in the order R, G, B within a pixel, though the data is
    channel-major); completing pixel 1 given pixel 0 (a prefix of that order) draws from
    P(pixel 1 | pixel 0); observing G without R (not a prefix) is refused."""
    module = model(colour_info(1, 2), layer)
    p = _log_probs(module, all_images(6, 2)).exp()
    n = 20_000
    drawn = FAMILY.capability(Capability.SAMPLE)(module, SampleOptions(n=n, seed=0))
    assert drawn.shape == (n, 6)
    freq = torch.bincount(codes(drawn), minlength=64).float() / n
    torch.testing.assert_close(freq, p, atol=0.012, rtol=0)

    complete = FAMILY.capability(Capability.COMPLETE)
    observed = torch.tensor([True, False, True, False, True, False])  # R, G, B of pixel 0
    given = torch.tensor([1.0, 0, 0, 0, 1, 0])  # pixel 0 = (1, 0, 1)
    out = complete(module, given.expand(n, 6), observed, SampleOptions(n=n, seed=1))
    assert torch.equal(out[:, observed], given[observed].expand(n, 3))
    agrees = (all_images(6, 2)[:, observed] == given[observed]).all(1)
    expected = torch.where(agrees, p, torch.zeros(())) / p[agrees].sum()
    freq = torch.bincount(codes(out), minlength=64).float() / n
    torch.testing.assert_close(freq, expected, atol=0.012, rtol=0)
    g_only = torch.tensor([False, False, True, False, False, False])
    with pytest.raises(Unsupported, match="raster order"):
        complete(module, given.expand(2, 6), g_only, SampleOptions(n=2))


@pytest.mark.parametrize("layer", LAYERS)
def test_work_counts_the_recurrent_passes(layer: Layer) -> None:
    """A pass over n images' first r rows costs n · r · W · RNN_SLOWDOWN dense rows plus
    STEP_MACS / parameters per sequential step (r per layer for the Row LSTM, 2 (W + r − 1)
    for the Diagonal BiLSTM's two streams over the skewed map): sampling is one pass per
    pixel and channel over the rows down to the pixel's, a log-likelihood one full pass."""
    h, w, layers = 4, 3, 2
    module = model(colour_info(h, w), layer, layers=layers)
    params = sum(p.numel() for p in module.parameters())
    slow, step = RNN_SLOWDOWN[layer], STEP_MACS[layer]

    def steps(r: int) -> int:
        return layers * (r if layer == "row_lstm" else 2 * (w + r - 1))

    def work(n: int, r: int) -> int:
        return n * r * w * slow + -(-steps(r) * step // params)

    assert module.steps(h) == steps(h) and module.pass_work(5, 2) == work(5, 2)
    # 3 channels × W pixels a row, each a pass over the rows down to its own
    assert module.sample_rows(5) == sum(3 * w * work(5, r) for r in range(1, h + 1))
    bottom = torch.zeros(3, h, w, dtype=torch.bool)
    bottom[:, -1] = True
    assert module.fill_rows(5, bottom.flatten()) == 3 * w * work(5, h)
    assert FAMILY.log_prob_passes is not None
    assert FAMILY.log_prob_passes(module) == work(1, h)


def test_a_tiny_fit_lowers_the_test_nll_and_times_sampling() -> None:
    data = tiny("digits_bin", n_train=128, n_eval=32)
    for layer in LAYERS:
        params = PixelRNNParams(layer=layer, hidden=4, layers=1)
        module = FAMILY.build(params, data.info)
        assert isinstance(module, PixelRNN)
        before = evaluate(module, data, "test")["test_nll"]
        ctx = LocalContext(epochs=3, batch_size=32)
        FAMILY.fit(module, data, params, ctx)
        ((_, after),) = ctx.metric("test_nll")
        assert after < before - 1.0, layer
        ((_, seconds),) = ctx.metric("sample_seconds_per_image")  # the notes' "slow gen"
        assert 0 < seconds < 60
