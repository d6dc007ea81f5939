"""PNG figures of a trained predictive model: uncertainty bands and reliability diagrams.

matplotlib's object API on ``Figure`` with the Agg canvas, never ``pyplot``: no global
figure state, so concurrent requests in the server's threads render independently.
matplotlib is imported on first use, not when the API starts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from models.calibration import Bin

MEAN, EPISTEMIC, TOTAL, DATA = "#0b2545", "#3f7cc4", "#f6c48a", "#222222"


def _figure(width: float, height: float, **kwargs: Any) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained", **kwargs)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def uncertainty_png(
    *,
    grid: np.ndarray,
    mean: np.ndarray,
    epistemic_var: np.ndarray,
    aleatoric_var: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    z: float,
    level: float,
    title: str,
) -> bytes:
    """Top: data, predictive mean, epistemic and total central bands. Bottom: both σ vs x."""
    fig = _figure(8.0, 6.2)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
    total_sd = np.sqrt(np.clip(epistemic_var + aleatoric_var, 0, None))
    epi_sd = np.sqrt(np.clip(epistemic_var, 0, None))
    ale_sd = np.sqrt(np.clip(aleatoric_var, 0, None))
    pct = f"{100 * level:g}%"
    top.fill_between(
        grid, mean - z * total_sd, mean + z * total_sd, color=TOTAL, alpha=0.8, lw=0,
        label=f"total (epistemic + aleatoric), {pct}",
    )  # fmt: skip
    top.fill_between(
        grid, mean - z * epi_sd, mean + z * epi_sd, color=EPISTEMIC, alpha=0.7, lw=0,
        label=f"epistemic, {pct}",
    )  # fmt: skip
    top.scatter(x_train, y_train, s=7, color=DATA, alpha=0.55, lw=0, label="training data")
    top.plot(grid, mean, color=MEAN, lw=1.8, label="predictive mean")
    lo, hi = np.percentile(y_train, [0.5, 99.5]) if len(y_train) else (-1.0, 1.0)
    span = hi - lo or 1.0
    top.set_ylim(lo - 0.35 * span, hi + 0.35 * span)  # a ballooning band is clipped, not the data
    top.set_ylabel("y")
    top.legend(loc="upper left", fontsize=8, framealpha=0.9)
    top.grid(alpha=0.25)
    top.set_title(title, fontsize=10)

    bottom.plot(grid, epi_sd, color=EPISTEMIC, lw=1.6, label="epistemic σ")
    bottom.plot(grid, ale_sd, color="#d08a2a", lw=1.6, label="aleatoric σ")
    bottom.set_yscale("log")
    bottom.set_xlabel("x")
    bottom.set_ylabel("σ (log)")
    bottom.legend(loc="upper left", fontsize=8, framealpha=0.9)
    bottom.grid(alpha=0.25, which="both")
    x0, x1 = float(grid[0]), float(grid[-1])
    top.set_xlim(x0, x1)
    return _png(fig)


def reliability_png(bins: Sequence[Bin], *, ece: float, accuracy: float, title: str) -> bytes:
    """Accuracy per confidence bin against the diagonal, with the count of each bin."""
    fig = _figure(6.4, 6.4)
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    width = bins[0].upper - bins[0].lower if bins else 1.0
    lefts = np.array([b.lower for b in bins])
    acc = np.array([b.accuracy if b.accuracy is not None else 0.0 for b in bins])
    conf = np.array([b.confidence if b.confidence is not None else np.nan for b in bins])
    filled = np.array([b.count > 0 for b in bins])
    ax.plot([0, 1], [0, 1], ls="--", color="#777777", lw=1, label="perfect calibration")
    ax.bar(
        lefts[filled], acc[filled], width=width, align="edge", color=EPISTEMIC,
        edgecolor="white", label="accuracy",
    )  # fmt: skip
    gap_lo = np.minimum(acc, conf)[filled]
    gap = np.abs(conf - acc)[filled]
    ax.bar(
        lefts[filled], gap, bottom=gap_lo, width=width, align="edge", fill=False,
        hatch="///", edgecolor="#c9302c", lw=0.8, label="gap to mean confidence",
    )  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.25)
    ax.set_title(f"{title}\nECE {ece:.4f} · accuracy {accuracy:.3f}", fontsize=10)
    counts = [b.count for b in bins]
    hist.bar(lefts, counts, width=width, align="edge", color="#999999", edgecolor="white")
    for b in bins:
        if b.count:
            hist.text(
                (b.lower + b.upper) / 2, b.count, str(b.count), ha="center", va="bottom",
                fontsize=7, color="#333333",
            )  # fmt: skip
    hist.set_ylim(0, 1.25 * max([*counts, 1]))
    hist.set_xlabel("confidence (top label)")
    hist.set_ylabel("count")
    return _png(fig)


def coverage_png(curve: Sequence[dict[str, float]], *, title: str) -> bytes:
    """Regression calibration curve: observed against nominal central-interval coverage."""
    fig = _figure(6.0, 6.0)
    ax = fig.subplots()
    levels = [p["level"] for p in curve]
    observed = [p["coverage"] for p in curve]
    ax.plot([0, 1], [0, 1], ls="--", color="#777777", lw=1, label="perfect calibration")
    ax.plot(levels, observed, marker="o", color=EPISTEMIC, lw=1.8, label="observed")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("nominal coverage of the central interval")
    ax.set_ylabel("observed coverage (test split)")
    ax.text(0.55, 0.08, "below the diagonal: overconfident", fontsize=8, color="#555555")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.25)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def _show_image(ax: Any, img: np.ndarray, value_max: float) -> None:
    """An image (C, H, W) in 0..value_max on ``ax``: grey (C = 1) or colour (C = 3)."""
    img = np.clip(img / (value_max or 1.0), 0.0, 1.0)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.moveaxis(img, 0, -1), interpolation="nearest")


def image_grid_png(
    images: np.ndarray, *, value_max: float, title: str, cols: int | None = None
) -> bytes:
    """Images (n, C, H, W) in 0..value_max as one grid, grey (C = 1) or colour (C = 3)."""
    n = len(images)
    cols = cols or max(1, int(np.ceil(np.sqrt(n))))
    rows = int(np.ceil(n / cols))
    fig = _figure(max(2.0, 0.9 * cols), max(2.0, 0.9 * rows + 0.4))
    fig.suptitle(title, fontsize=9)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, img in zip(axes, images, strict=False):
        _show_image(ax, img, value_max)
    return _png(fig)


def receptive_field_png(field: np.ndarray, *, row: int, col: int, title: str) -> bytes:
    """An influence map (H, W) of gradient magnitudes on pixel (row, col): every pixel
    with some influence coloured on a log scale (down to 10⁻⁴ of the largest, so weak
    ones show), pixels with none (exactly zero) hatched grey, the pixel itself outlined."""
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Patch, Rectangle

    h, w = field.shape
    fig = _figure(max(4.0, 0.32 * w + 2.0), max(3.6, 0.32 * h + 1.0))
    ax = fig.subplots()
    ax.add_patch(
        Rectangle(
            (-0.5, -0.5), w, h, facecolor="#d9d9d9", edgecolor="#9a9a9a", hatch="///", zorder=-1
        )
    )
    top = float(field.max())
    if top > 0:
        shown = np.ma.masked_where(field <= 0, np.maximum(field, top * 1e-4))
        image = ax.imshow(
            shown, cmap="viridis", norm=LogNorm(top * 1e-4, top), interpolation="nearest"
        )
        fig.colorbar(image, ax=ax, label="influence (Σ |∂ conditional / ∂ pixel|)")
    ax.add_patch(
        Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="#e8590c", linewidth=2.5)
    )
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks(range(0, w, max(1, w // 8)))
    ax.set_yticks(range(0, h, max(1, h // 8)))
    handles = [
        Patch(facecolor="#d9d9d9", hatch="///", label="no influence (0)"),
        Patch(facecolor="none", edgecolor="#e8590c", linewidth=2, label=f"pixel ({row}, {col})"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, fontsize=7)
    ax.set_title(title, fontsize=8)
    return _png(fig)


def gradients_png(
    grad: np.ndarray,
    *,
    positions: Sequence[int],
    steps: Sequence[int],
    title: str,
    label: str = "log10 ‖∂L/∂c_k‖",
) -> bytes:
    """A heat map of log10 ‖∂L/∂c_k‖ (``grad`` (steps, positions); or of another norm,
    ``label`` says which): time step k across,
    training step down, one row per evaluation. A vanishing gradient is a colour falling
    off to the left (early steps), an exploding one a row turning bright; a missing or zero
    value is grey."""
    from matplotlib.colors import Normalize

    with np.errstate(divide="ignore", invalid="ignore"):
        logged = np.log10(grad)
    shown = np.ma.masked_invalid(logged)
    fig = _figure(6.4, 4.2)
    ax = fig.subplots()
    ax.set_facecolor("#d9d9d9")
    finite = logged[np.isfinite(logged)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 0.0)
    # cell edges halfway between the recorded steps, so uneven spacing is drawn as it is
    image = ax.pcolormesh(
        _edges(positions),
        _edges(steps),
        shown,
        cmap="magma",
        norm=Normalize(low, high if high > low else low + 1.0),
        shading="flat",
    )
    fig.colorbar(image, ax=ax, label=label)
    ax.set_xlabel("time step k")
    ax.set_ylabel("training step (evaluation)")
    ax.invert_yaxis()
    ax.set_title(title, fontsize=8)
    return _png(fig)


def _edges(centres: Sequence[int]) -> np.ndarray:
    """Cell edges around sorted centres: halfway between neighbours, ±0.5 at the ends."""
    c = np.asarray(centres, dtype=float)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def completions_png(
    originals: np.ndarray, completions: np.ndarray, *, keep_rows: int, value_max: float, title: str
) -> bytes:
    """A row per image: the original (C, H, W), its first ``keep_rows`` rows (the rest
    grey), then its completions (n, S, C, H, W); all in 0..value_max."""
    n, s = completions.shape[:2]
    cols = s + 2
    fig = _figure(max(3.0, 0.9 * cols), max(2.0, 0.9 * n + 0.5))
    fig.suptitle(title, fontsize=8)
    axes = np.atleast_2d(fig.subplots(n, cols, squeeze=False))
    heads = ["original", "top half", *(f"completion {j + 1}" for j in range(s))]
    for i in range(n):
        observed = originals[i].copy()
        observed[:, keep_rows:] = (value_max or 1.0) / 2
        row = [originals[i], observed, *completions[i]]
        for j, (ax, img) in enumerate(zip(axes[i], row, strict=True)):
            ax.set_axis_off()
            _show_image(ax, img, value_max)
            if i == 0:
                ax.set_title(heads[j], fontsize=6)
    return _png(fig)


def scatter_png(
    samples: np.ndarray, *, data: np.ndarray, modes: np.ndarray | None, title: str
) -> bytes:
    """2-D samples (orange) over the training data (grey), with the true modes (×) if known."""
    fig = _figure(6.0, 6.0)
    ax = fig.subplots()
    ax.scatter(data[:, 0], data[:, 1], s=3, c="#999999", alpha=0.35, lw=0, label="training data")
    ax.scatter(samples[:, 0], samples[:, 1], s=5, c="#e8590c", alpha=0.7, lw=0, label="samples")
    if modes is not None:
        ax.scatter(modes[:, 0], modes[:, 1], s=60, marker="x", c=MEAN, label="true modes")
    _square_limits(ax, np.concatenate([data, samples[np.isfinite(samples).all(1)]]))
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=8, markerscale=2)
    return _png(fig)


def density_png(
    xs: np.ndarray, ys: np.ndarray, log_p: np.ndarray, *, data: np.ndarray, title: str
) -> bytes:
    """The learned density exp(log p) on a grid (heat map) with the data on top."""
    fig = _figure(6.4, 5.6)
    ax = fig.subplots()
    density = np.exp(np.clip(log_p, -50, 50))
    mesh = ax.pcolormesh(xs, ys, density, shading="auto", cmap="magma")
    fig.colorbar(mesh, ax=ax, label="p(x)")
    ax.scatter(data[:, 0], data[:, 1], s=2, c="#7fdbff", alpha=0.4, lw=0, label="data")
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    return _png(fig)


def _square_limits(ax: Any, points: np.ndarray) -> None:
    lo, hi = points.min(0), points.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * 1.1 + 1e-6
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal")


# the leaderboard's kinds of number: colour and hatch (printed in grey they still differ)
KIND_STYLE = {
    "exact": ("#3f7cc4", ""),
    "bound": ("#f6c48a", "//"),
    "estimate": ("#8fbf88", ".."),
}
KIND_LABEL = {"exact": "exact log P", "bound": "bound", "estimate": "estimate ± 1 s.e."}


def leaderboard_png(
    bars: Sequence[tuple[str, float, str, float | None]], *, title: str, unit: str
) -> bytes:
    """Horizontal bars (label, value, kind, stderr), best first on top; one style per kind
    (exact, bound, estimate) with a legend, error bars (±1 standard error) on estimates.
    No bars: a figure saying so."""
    fig = _figure(7.0, max(2.2, 0.32 * len(bars) + 1.4))
    ax = fig.subplots()
    ax.set_title(f"{title} (lower is better)", fontsize=9)
    if not bars:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no finished likelihood jobs on this dataset yet", ha="center",
                va="center", fontsize=9, transform=ax.transAxes)  # fmt: skip
        return _png(fig)
    y = np.arange(len(bars))
    for kind, (colour, hatch) in KIND_STYLE.items():
        rows = [i for i, b in enumerate(bars) if b[2] == kind]
        if not rows:
            continue
        errors = [bars[i][3] or 0.0 for i in rows] if kind == "estimate" else None
        drawn = ax.barh(
            y[rows], [bars[i][1] for i in rows], xerr=errors, color=colour, hatch=hatch,
            edgecolor="#555555", lw=0.5, capsize=3, label=KIND_LABEL[kind],
        )  # fmt: skip
        ax.bar_label(drawn, fmt="%.4g", padding=3, fontsize=7)
    ax.set_yticks(y, [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()  # rank 1 on top
    ax.set_xlabel(unit)
    ax.axvline(0.0, color="#222222", lw=0.6)
    ax.margins(x=0.12)  # room for the values
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _png(fig)


def filters_png(weights: np.ndarray, *, units: Sequence[int], title: str) -> bytes:
    """Signed weights (n, C, H, W), one tile per unit labelled with its index: each tile
    on its own symmetric scale, ±max |w| of the tile, a diverging map with white at 0
    (red positive, blue negative); colour images (C = 3) at 0.5 + 0.5 w / max |w| per
    channel (grey at 0)."""
    n = len(weights)
    cols = max(1, int(np.ceil(np.sqrt(n))))
    rows = int(np.ceil(n / cols))
    fig = _figure(max(2.4, 0.9 * cols), max(2.4, 0.95 * rows + 0.5))
    fig.suptitle(title, fontsize=8)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, w, unit in zip(axes, weights, units, strict=False):
        top = float(np.abs(w).max()) or 1.0
        if w.shape[0] == 1:
            ax.imshow(w[0], cmap="RdBu_r", vmin=-top, vmax=top, interpolation="nearest")
        else:
            ax.imshow(np.moveaxis(0.5 + 0.5 * w / top, 0, -1), interpolation="nearest")
        ax.set_title(f"{unit}", fontsize=5, pad=1)
    return _png(fig)


def chain_png(frames: np.ndarray, *, steps: Sequence[int], value_max: float, title: str) -> bytes:
    """One chain's states (F, C, H, W) in 0..value_max as a row, the sweep count under each."""
    n = len(frames)
    fig = _figure(max(3.0, 1.0 * n), 1.9)
    fig.suptitle(title, fontsize=8)
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)).ravel()
    for ax, img, step in zip(axes, frames, steps, strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        _show_image(ax, img, value_max)
        ax.set_xlabel(f"step {step}", fontsize=7)
    return _png(fig)


def embedding_png(
    vectors: np.ndarray, *, labels: Sequence[int] | None, names: Sequence[str], title: str
) -> bytes:
    """Node embeddings (n, d) on their first two principal components, coloured by label
    when there are labels; the nodes named when there are at most 80 of them."""
    centred = vectors - vectors.mean(0)
    # the covariance's top eigenvectors: d × d work, not an SVD of the n × d matrix
    _, eigvecs = np.linalg.eigh(centred.T @ centred)
    xy = centred @ eigvecs[:, ::-1][:, :2] if vectors.shape[1] > 1 else np.c_[centred, 0 * centred]
    fig = _figure(6.4, 6.0)
    ax = fig.subplots()
    colour = None if labels is None else np.asarray(labels)
    dots = ax.scatter(
        xy[:, 0], xy[:, 1], s=12 if len(xy) <= 2000 else 3, c=colour, cmap="tab10", lw=0
    )
    if labels is not None and len(set(labels)) <= 10:
        ax.legend(*dots.legend_elements(), title="label", loc="best", fontsize=8)
    if len(xy) <= 80:
        for (x, y), name in zip(xy, names, strict=True):
            ax.annotate(
                name, (x, y), fontsize=6, alpha=0.8, xytext=(2, 2), textcoords="offset points"
            )
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def sweep_curves_png(
    curves: Sequence[tuple[str, Sequence[int], Sequence[float | None]]],
    *,
    metric: str,
    title: str,
) -> bytes:
    """A sweep's children's ``metric`` against the step, one line per child, overlaid
    (labelled with the child's number and values; best first in the legend, as given).
    No curves yet: a figure saying so."""
    fig = _figure(8.0, 4.6)
    ax = fig.subplots()
    ax.set_title(title, fontsize=9)
    if not curves:
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"no child has logged {metric} yet", ha="center", va="center",
                fontsize=9, transform=ax.transAxes)  # fmt: skip
        return _png(fig)
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for i, (label, steps, values) in enumerate(curves):
        y = np.array([np.nan if v is None else v for v in values], dtype=float)
        colour = cmap(i / max(1, len(curves) - 1) * 0.9)
        ax.plot(steps, y, lw=1.4, color=colour, marker="o" if len(steps) < 3 else None,
                ms=3, label=label if i < 20 else None)  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return _png(fig)


def trajectory_png(
    xs: np.ndarray,
    ys: np.ndarray,
    loss: np.ndarray,
    paths: Sequence[tuple[str, np.ndarray]],
    *,
    minima: Sequence[Sequence[float]],
    floor: float | None,
    title: str,
    caption: str = "",
) -> bytes:
    """Optimizers' paths over a landscape: filled contours of log10(f − floor) on the grid
    ``xs`` × ``ys`` (``loss`` (len(ys), len(xs))), each path ((label, (n, 2) points): the
    start a circle, the last point a square; one path in white, several in distinct
    colours with their labels), the known minima as stars. ``floor`` is the known minimum
    f*, else the grid's lowest value; a non-finite point of a path is dropped."""
    low = float(np.nanmin(loss)) if floor is None else min(floor, float(np.nanmin(loss)))
    span = max(float(np.nanmax(loss)) - low, 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        shown = np.log10(loss - low + 1e-6 * span)
    many = len(paths) > 1
    fig = _figure(7.6 if many else 6.0, 5.0 + (0.12 * min(len(paths), 20) if many else 0.0))
    ax = fig.subplots()
    filled = ax.contourf(xs, ys, shown, levels=30, cmap="Greys_r" if many else "viridis")
    ax.contour(xs, ys, shown, levels=15, colors="k", linewidths=0.3, alpha=0.5)
    fig.colorbar(filled, ax=ax, label="log10 (f − f*)" if floor is not None else "log10 (f − min)")
    from matplotlib import colormaps

    cmap = colormaps["turbo"]
    for i, (label, path) in enumerate(paths):
        finite = path[np.isfinite(path).all(axis=1)]
        if not len(finite):
            continue
        colour = cmap(0.1 + 0.8 * i / max(1, len(paths) - 1)) if many else "white"
        ax.plot(finite[:, 0], finite[:, 1], "-", color=colour, linewidth=1.2,
                label=label if many and i < 20 else None)  # fmt: skip
        ax.plot(finite[:, 0], finite[:, 1], ".", color=colour, markersize=2 if many else 3)
        ax.plot(*finite[0], "o", color="#f6c48a" if not many else colour, markersize=7,
                markeredgecolor="k" if many else None, label=None if many else "start")  # fmt: skip
        ax.plot(*finite[-1], "s", color="#e4572e" if not many else colour, markersize=6,
                markeredgecolor="k" if many else None, label=None if many else "last")  # fmt: skip
    for m in minima:
        ax.plot(m[0], m[1], "*", color="#ffd400", markersize=11, markeredgecolor="k")
    ax.set_xlim(float(xs[0]), float(xs[-1]))
    ax.set_ylim(float(ys[0]), float(ys[-1]))
    ax.set_xlabel("w0")
    ax.set_ylabel("w1")
    if many:
        fig.legend(loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    else:
        ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title + (f"\n{caption}" if caption else ""), fontsize=8)
    return _png(fig)
