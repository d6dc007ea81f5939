"""The adding problem at 50, 100 and 200 steps: the tanh cell against LSTM and GRU (issue 18,
item 6).

Hochreiter & Schmidhuber 1997's task (``models.data.builtin.adding_problem``): a model
that ignores the two markers can do no better than answer 1, an MSE of 1/6 ≈ 0.167; one
that solves it is below 0.01. Each cell trains with our family's own ``fit`` in process
(``LocalContext``, one torch thread, denormals flushed as the worker trains): hidden 64,
Adam at 2e-3, batch 64, the global gradient norm clipped at 1, xavier init (the LSTM's
forget bias ``--forget-bias``, by default the family's 1), at most ``--steps`` optimizer
steps; a run stops at the first evaluation (one an epoch, 110 steps) whose validation MSE
is below 0.005. Scored by the test MSE of the last weights. The gradient picture of each
cell's first seed at 100 steps (the service's ``gradients.png``) goes to
docs/img/rnn-gradients-<cell>.png.

    python -m bench.rnn                           # every cell, length and seed 0-2
    python -m bench.rnn --cells tanh --lengths 50 --seeds 0 --steps 300
    python -m bench.rnn --cells lstm --lengths 200 --seeds 100 --forget-bias 3
    python -m bench.rnn --cells lstm --lengths 200 --seeds 100 --forget-bias chrono

Writes bench/out/rnn-<cells>-<lengths>-s<seeds>[-fb<forget bias>].json (one file per set,
so cells, lengths and seeds can run side by side in separate processes).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from app.config import get_settings
from app.plots import gradients_png
from bench.common import save
from models.context import LocalContext
from models.data import load
from models.data.builtin import ADDING_BASELINE_MSE
from models.family import GRADIENT_METRICS
from models.loop import flush_denormals
from models.optim import OptimizerSpec
from models.rnn import RNN, RNNParams, evaluate, fit
from models.rnn.model import CellName

DATASETS = {50: "adding_50", 100: "adding", 200: "adding_200"}
SOLVED_MSE, STOP_MSE = 0.01, 0.005
PICTURES = Path(__file__).resolve().parents[1] / "docs" / "img"


class StopWhenSolved(LocalContext):
    """A LocalContext that asks the family to stop once a validation MSE is below STOP_MSE."""

    solved_at: int | None = None

    def log(self, step: int, **metrics: float) -> None:
        super().log(step, **metrics)
        if self.solved_at is None and metrics.get("val_mse", math.inf) < STOP_MSE:
            self.solved_at = step

    def should_stop(self) -> bool:
        return self.solved_at is not None


def profile(history: list[tuple[int, dict[str, float]]]) -> tuple[list[int], list[int], np.ndarray]:
    """(training steps, time steps, ‖∂L/∂c_k‖ (steps, time steps)) from the logged metrics."""
    prefix = GRADIENT_METRICS[0]
    rows = [(step, m) for step, m in history if any(k.startswith(prefix) for k in m)]
    ks = sorted(int(k[len(prefix) :]) for k in rows[0][1] if k.startswith(prefix))
    grid = np.array([[m[f"{prefix}{k}"] for k in ks] for _, m in rows])
    return [step for step, _ in rows], ks, grid


def run(
    cell: CellName,
    length: int,
    seed: int,
    steps: int,
    picture: bool,
    forget_bias: float | Literal["chrono"] | None,
) -> dict[str, Any]:
    data = load(DATASETS[length])
    params = RNNParams(
        cell=cell, hidden=64, clip_norm=1.0, forget_bias=forget_bias if cell == "lstm" else None
    )
    ctx = StopWhenSolved(
        steps=steps, batch_size=64, seed=seed, optimizer=OptimizerSpec(name="adam", lr=2e-3)
    )
    module = RNN(params, data.info)
    start = time.perf_counter()
    with flush_denormals(get_settings().flush_denormal):  # as the worker trains
        fit(module, data, params, ctx)
    seconds = time.perf_counter() - start
    test = evaluate(module.eval(), data.x_test, data.y_test, "test")
    last = [m for _, m in ctx.history if "val_mse" in m][-1]
    train_steps, ks, grid = profile(ctx.history)
    if picture:
        title = f"rnn {cell} on {DATASETS[length]} · seed {seed} · log10 ‖∂L/∂c_k‖"
        png = gradients_png(grid, positions=ks, steps=train_steps, title=title)
        (PICTURES / f"rnn-gradients-{cell}.png").write_bytes(png)
    return {
        "cell": cell,
        "length": length,
        "seed": seed,
        "forget_bias": params.forget_bias,
        "test_mse": test["test_mse"],
        "solved": test["test_mse"] < SOLVED_MSE,
        "steps": train_steps[-1],
        "solved_at_step": ctx.solved_at,
        "seconds": seconds,
        "spectral_radius": last["spectral_radius"],
        # how many decades the gradient falls from the last step to the first, at the end
        "grad_decades": float(np.log10(grid[-1, -1] / grid[-1, 0])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["tanh", "lstm", "gru"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps at most")
    parser.add_argument(
        "--forget-bias",
        type=lambda v: v if v == "chrono" else float(v),
        help="the LSTM's forget_bias, a number or chrono (default: the family's)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for length in args.lengths:
        for cell in args.cells:
            for seed in args.seeds:
                picture = length == 100 and seed == args.seeds[0]
                r = run(cell, length, seed, args.steps, picture, args.forget_bias)
                rows.append(r)
                print(
                    f"T={length} {cell} seed {seed}: test MSE {r['test_mse']:.4f} "
                    f"({'solved' if r['solved'] else 'not solved'}) after {r['steps']} steps, "
                    f"{r['seconds']:.0f} s; gradient falls {r['grad_decades']:.1f} decades",
                    flush=True,
                )
                name = "-".join(["rnn", *args.cells, *map(str, args.lengths), "s"])
                name += "".join(map(str, args.seeds))
                if args.forget_bias is not None:
                    fb = args.forget_bias
                    name += f"-fb{fb if fb == 'chrono' else format(fb, 'g')}"
                save(name, {"baseline": ADDING_BASELINE_MSE, "rows": rows})


if __name__ == "__main__":
    main()
