"""The optimizer lab's claims as a table (issue 20, part 3): steps to a tolerance for every
optimizer on each landscape, Adam's uncorrected first step, Newton in one step whatever
the condition number, and Newton's cost against the parameter count.

1. Steps to tolerance: the step from which f(w) − f* ≤ 1e-6 (``--tol``) holds to the end
   of a budget of ``--steps`` (3,000) (a first touch is not enough: a rule at a large lr
   may touch and leave), for every first-order rule of ``models.optim`` (their
   ``build_optimizer``, default hyperparameters: momentum 0.9, RMSProp α 0.99, Adam β
   (0.9, 0.999), ε 1e-8), each with its learning rate chosen from a grid of half decades
   (1e-4 .. 1) on 10 tuning starts (seeds 100-109, never reported): the lr with the
   smallest median steps (a start that does not converge counts as never), ties to the
   smaller mean. The table reports seeds 0, 1, 2: seed 0 is the landscape's own start,
   seeds ≥ 1 perturb each coordinate by N(0, (5% of the plotted span)²) (the saddle's x
   only: its y stays on the ridge, 0.001). Newton (η = 1, nothing to tune) runs plain and
   with its line search, at most 1,000 steps. The grid runs here, in process (part 5
   runs it through POST /v1/sweeps instead, to check the two agree). For speed every
   first-order rule, lr and start moves at once (``first_order_run``: one tensor of
   points, each rule on a shadow of its rows at η = 1, each row then scaled by its own η;
   tested equal to the plain rule); Newton runs one start at a time (its Hessian couples
   coordinates).
2. Adam without bias correction's first step: the family's own fit (``LocalContext``), one
   step on rosenbrock, each coordinate's move over lr: lr·(1−β₁)/√(1−β₂) ≈ 3.16·lr
   expected, against 1 with the correction.
3. Newton at condition numbers 1 .. 1e8 on the 10-D quadratic: f − f* after one step
   (the family's fit), against gradient descent at its best fixed rate 2/(λmin + λmax),
   steps to the tolerance (at most 200,000).
4. Newton's cost: seconds per step on the quadratic of n coordinates (n up to 2,000,
   twice the API's cap), against Adam's, and the Hessian's size, n² float64 values.

5. ``--via-sweeps [URL]``: part 1's lr search through the sweeps service over HTTP
   instead of in process, to check that the two pick the same rates. For each landscape
   and rule one grid sweep of the ``optim`` family (``POST /v1/sweeps``), ranked by
   ``settled_step`` (the family's own count of the criterion above; a child that never
   settles logs none and a diverged one fails: both count as never), over
   ``optimizer.lr`` × ``params.start``: the 9 rates × the first ``--tune-starts`` (6)
   tuning starts sent as explicit points (9 × 6 = 54 children; a sweep may have 64, so
   7 is the most). At most ``--max-sweeps`` (10, the service's cap per owner) run at
   once, the rest queued here. The lr is then picked from the children by ``pick_lr``,
   the in-process rule (the smallest median steps over the starts, ties to the smaller
   mean; when no rate settles, the smallest median final f − f*, read from each child's
   job), beside the in-process grid's pick on the same starts and on all 10. Newton
   (η = 1) has nothing to tune: no sweep.

    python -m bench.optim_lab                      # all of it (~10 minutes)
    python -m bench.optim_lab --parts pictures     # docs/img/optim-trajectory-*.png
    python -m bench.optim_lab --parts table --landscapes rosenbrock beale
    python -m bench.optim_lab --via-sweeps --landscapes beale   # against `make run`
    python -m bench.optim_lab --via-sweeps http://host:8000 --landscapes beale

Writes bench/out/optim_lab.json (``--via-sweeps``: optim_lab-sweeps-….json) and prints
markdown tables. One torch thread. ``--via-sweeps`` finds the key as the ``deepzoo``
client does: ``DEEPZOO_API_KEY``, else ``./var/admin.key`` (what ``make run`` writes).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import time
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.sweeps import MAX_TRIALS as MAX_SWEEP_TRIALS  # children of one sweep
from bench.common import save
from models.context import LocalContext
from models.data import Landscape, load_data
from models.optim import OptimizerName, OptimizerSpec, build_optimizer
from models.optim_lab import FAMILY, OptimLabParams, Point

FIRST_ORDER = [n for n in typing.get_args(OptimizerName) if n != "newton"]
LRS = [10 ** (k / 2) for k in range(-8, 1)]  # 1e-4, 3.2e-4, ..., 0.32, 1
TUNE_SEEDS = list(range(100, 110))
REPORT_SEEDS = [0, 1, 2]
NEWTON_BUDGET = 1_000  # Newton steps: one that has not converged by then is stuck


@dataclass(frozen=True)
class Case:
    label: str
    dataset: str
    dim: int | None = None
    kappa: float | None = None

    def landscape(self) -> Landscape:
        land = landscape(self.dataset)
        if self.dim is None:
            return land
        return land.resized(self.dim, condition_number=float(self.kappa or 10.0))


def landscape(name: str) -> Landscape:
    land = load_data(name)
    assert isinstance(land, Landscape)
    return land


CASES = [
    Case("quadratic κ 10, 2-D", "quadratic"),
    Case("quadratic κ 10³, 10-D", "quadratic", dim=10, kappa=1e3),
    Case("rosenbrock", "rosenbrock"),
    Case("beale", "beale"),
    Case("saddle", "saddle"),
    Case("himmelblau", "himmelblau"),
    Case("logistic", "logistic"),
]


def start(land: Landscape, seed: int) -> torch.Tensor:
    """Seed 0: the landscape's start; others: each coordinate moved by N(0, (5% span)²)
    (the saddle's x only)."""
    w = torch.tensor(land.start, dtype=torch.float64)
    if seed == 0:
        return w
    rng = np.random.default_rng(seed)
    (x0, x1), (y0, y1) = land.bounds
    span = max(x1 - x0, y1 - y0)
    offset = torch.tensor(rng.normal(0, 0.05 * span, size=land.dim))
    if land.function == "saddle":
        offset[1:] = 0
    return w + offset


def first_order_run(
    land: Landscape, seeds: list[int], budget: int, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Steps to tolerance (rule, lr, seed): the step from which f − f* stays ≤ ``tol`` to
    the end of the budget (inf: not, or diverged; a rule that touches the tolerance and
    leaves it again, Adam at a large lr, has not converged), and the final gap f − f*
    (nan when diverged), every rule, lr and start moving at once.

    One tensor W holds every (rule, lr, start) point. Every rule here is w ← w − η D, D
    built from the gradients alone (no weight decay), so each rule runs at η = 1 on a
    shadow tensor of its rows, reset to 0 before each step: its move is −D, and each row
    of W then moves by its own η times it (equal to the rule at that η up to rounding)."""
    f_star = land.minimum
    assert f_star is not None
    starts = torch.stack([start(land, s) for s in seeds]).repeat(len(LRS), 1)  # (L·S, d)
    block = len(starts)
    w = starts.repeat(len(FIRST_ORDER), 1)  # (R·L·S, d), rule-major then lr-major
    home = w.clone()
    eta = torch.tensor(LRS, dtype=torch.float64).repeat_interleave(len(seeds))
    eta = eta.repeat(len(FIRST_ORDER)).unsqueeze(1)
    shadows = [torch.zeros_like(starts, requires_grad=True) for _ in FIRST_ORDER]
    opts = [
        build_optimizer(OptimizerSpec(name=name, lr=1.0), [shadow])
        for name, shadow in zip(FIRST_ORDER, shadows, strict=True)
    ]
    last_above = np.zeros(len(w))  # the last step whose f − f* was above tol (0: the start)
    alive = torch.ones(len(w), dtype=torch.bool)
    gap = np.full(len(w), np.nan)
    for t in range(1, budget + 1):
        point = w.detach().requires_grad_()
        (grad,) = torch.autograd.grad(land(point).sum(), point)
        with torch.no_grad():
            grad = torch.where(alive.unsqueeze(1), grad, 0.0)
            for i, (shadow, opt) in enumerate(zip(shadows, opts, strict=True)):
                shadow.grad = grad[i * block : (i + 1) * block]
                shadow.zero_()
                opt.step()
            w = w + eta * torch.cat(shadows)  # each shadow is −D
            losses = land(w)
            alive &= torch.isfinite(losses) & (w.abs() < 1e8).all(1)
            w = torch.where(alive.unsqueeze(1), w, home)  # a diverged point is parked
            gap = np.where(alive.numpy(), losses.numpy() - f_star, np.nan)
        above = ~(gap <= tol)  # nan (diverged) counts as above
        last_above[above] = t
    # converged at the step after the last one above the tolerance, if it ended below it
    steps = np.where(last_above < budget, last_above + 1, np.inf)
    shape = (len(FIRST_ORDER), len(LRS), len(seeds))
    return steps.reshape(shape), gap.reshape(shape)


def newton_run(
    land: Landscape, seed: int, line_search: bool, budget: int, tol: float
) -> tuple[float, float]:
    """(steps to tolerance or inf, final gap) for Newton with η = 1 from one start: the
    first step below it (a minimum is Newton's fixed point: it stays)."""
    f_star = land.minimum
    assert f_star is not None
    w = start(land, seed).requires_grad_()
    opt = build_optimizer(OptimizerSpec(name="newton", lr=1.0, line_search=line_search), [w])
    gap = math.inf

    def loss() -> Any:
        return land(w)

    for t in range(1, budget + 1):
        opt.step(loss)
        with torch.no_grad():
            gap = float(land(w)) - f_star
        if not math.isfinite(gap) or w.detach().abs().max() > 1e8:
            return math.inf, math.nan
        if gap <= tol:
            return float(t), gap
    return math.inf, gap


def pick_lr(steps: np.ndarray, gap: np.ndarray) -> int:
    """The lr index with the fewest median steps over the tuning starts (ties: the smaller
    mean); when none converges, the smallest median final gap."""
    medians = np.median(steps, axis=1)
    if np.isfinite(medians).any():
        means = np.where(np.isfinite(steps), steps, 1e18).mean(axis=1)
        order = sorted(range(len(LRS)), key=lambda i: (medians[i], means[i]))
        return order[0]
    with warnings.catch_warnings():  # a rate whose every start diverged: nan, then inf
        warnings.simplefilter("ignore", RuntimeWarning)
        gaps = np.nanmedian(np.where(np.isfinite(gap), gap, np.nan), axis=1)
    gaps = np.where(np.isnan(gaps), np.inf, gaps)
    return int(np.argmin(gaps))


def table(cases: list[Case], budget: int, tol: float) -> list[dict[str, Any]]:
    rows = []
    seeds = TUNE_SEEDS + REPORT_SEEDS
    for case in cases:
        land = case.landscape()
        t0 = time.perf_counter()
        all_steps, all_gaps = first_order_run(land, seeds, budget, tol)
        print(f"<!-- {case.label}: {time.perf_counter() - t0:.0f} s -->", flush=True)
        for r, name in enumerate(FIRST_ORDER):
            steps, gap = all_steps[r], all_gaps[r]
            tune = slice(0, len(TUNE_SEEDS))
            best = pick_lr(steps[:, tune], gap[:, tune])
            report = slice(len(TUNE_SEEDS), None)
            rows.append(
                {
                    "landscape": case.label,
                    "optimizer": name,
                    "lr": LRS[best],
                    "tune_median_steps": _num(float(np.median(steps[best, tune]))),
                    "tune_converged": int(np.isfinite(steps[best, tune]).sum()),
                    "steps": [_num(s) for s in steps[best, report]],
                    "final_gap": [_num(g) for g in gap[best, report]],
                }
            )
            print(_row(rows[-1]), flush=True)
        for line_search in (False, True):
            cap = min(budget, NEWTON_BUDGET)
            results = [newton_run(land, s, line_search, cap, tol) for s in REPORT_SEEDS]
            rows.append(
                {
                    "landscape": case.label,
                    "optimizer": "newton + line search" if line_search else "newton",
                    "lr": 1.0,
                    "steps": [_num(s) for s, _ in results],
                    "final_gap": [_num(g) for _, g in results],
                }
            )
            print(_row(rows[-1]), flush=True)
    return rows


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def _row(r: dict[str, Any]) -> str:
    steps = ", ".join("—" if s is None else f"{s:,.0f}" for s in r["steps"])
    return f"| {r['landscape']} | {r['optimizer']} | {r['lr']:.2g} | {steps} |"


def fit_once(dataset: str, spec: OptimizerSpec, steps: int, **params: Any) -> LocalContext:
    """The family's own fit, as a job runs it."""
    data = load_data(dataset)
    p = OptimLabParams(**params)
    module = FAMILY.build(p, data.info)
    ctx = LocalContext(steps=steps, optimizer=spec)
    FAMILY.fit(module, data, p, ctx)
    return ctx


def adam_first_step() -> dict[str, float]:
    lr = 1e-3
    out = {}
    for name in ("adam", "adam_no_bias_correction"):
        ctx = fit_once("rosenbrock", OptimizerSpec(name=name, lr=lr), 1)
        (norm,) = [m["step_norm"] for _, m in ctx.history if "step_norm" in m]
        out[name] = norm / math.sqrt(2) / lr  # both coordinates move by the same amount
    out["expected_no_correction"] = (1 - 0.9) / math.sqrt(1 - 0.999)
    return out


def newton_conditioning(tol: float) -> list[dict[str, Any]]:
    rows = []
    for kappa in (1.0, 1e2, 1e4, 1e6, 1e8):
        ctx = fit_once(
            "quadratic", OptimizerSpec(name="newton", lr=1.0), 1, dim=10, condition_number=kappa
        )
        (loss,) = [m["loss"] for _, m in ctx.history if "loss" in m]
        row: dict[str, Any] = {"kappa": kappa, "newton_gap_after_1": loss, "gd_steps": None}
        if kappa <= 1e4:
            land = landscape("quadratic").resized(10, condition_number=kappa)
            w = torch.tensor(land.start, dtype=torch.float64, requires_grad=True)
            opt = build_optimizer(OptimizerSpec(name="sgd", lr=2 / (1 + kappa)), [w])
            for t in range(1, 200_001):
                opt.zero_grad()
                loss_t = land(w)
                if float(loss_t.detach()) <= tol:
                    row["gd_steps"] = t - 1
                    break
                loss_t.backward()
                opt.step()
        rows.append(row)
        print(row, flush=True)
    return rows


def newton_cost() -> list[dict[str, Any]]:
    rows = []
    for n in (10, 100, 250, 500, 1000, 2000):
        land = landscape("quadratic").resized(n, condition_number=100.0)
        times = {}
        for name in ("newton", "adam"):
            w = torch.tensor(land.start, dtype=torch.float64, requires_grad=True)
            opt = build_optimizer(
                OptimizerSpec(name=name, lr=1.0 if name == "newton" else 1e-3), [w]
            )
            samples = []
            loss: Callable[[], Any] = functools.partial(land, w)
            for _ in range(3 if name == "newton" else 50):
                t0 = time.perf_counter()
                if name == "newton":
                    opt.step(loss)
                else:
                    opt.zero_grad()
                    land(w).backward()
                    opt.step()
                samples.append(time.perf_counter() - t0)
            times[name] = statistics.median(samples)
        row = {
            "parameters": n,
            "hessian_entries": n * n,
            "hessian_mib": n * n * 8 / 2**20,
            "newton_seconds": times["newton"],
            "adam_seconds": times["adam"],
        }
        rows.append(row)
        print(row, flush=True)
    return rows


# --- 5. the same lr search through the sweeps service ----------------------------------

SWEEP_METRIC = "settled_step"  # models.optim_lab's count of the criterion of part 1


def sweep_body(
    case: Case, rule: str, starts: list[list[float]], budget: int, tol: float
) -> dict[str, Any]:
    """One (landscape, rule) cell's lr search as a grid sweep: every rate × every start."""
    params: dict[str, Any] = {"tolerance": tol}
    if case.dim is not None:
        params |= {"dim": case.dim, "condition_number": float(case.kappa or 10.0)}
    return {
        "spec": {
            "model": "optim",
            "dataset": case.dataset,
            "params": params,
            "optimizer": {"name": rule, "lr": LRS[0]},
            "train": {"steps": budget},
        },
        "grid": {"optimizer.lr": LRS, "params.start": starts},
        "metric": SWEEP_METRIC,
        "goal": "min",
        "name": f"optim_lab {case.label} · {rule}",
    }


def sweep_steps(
    children: list[dict[str, Any]], starts: list[list[float]]
) -> tuple[np.ndarray, list[list[str | None]]]:
    """A finished sweep's children as part 1's table: steps (lr, start), inf where the
    child succeeded without settling (no ``settled_step``) or failed (diverged), and
    each cell's job id. A child in any other state (cancelled, deleted, refused) or a
    cell with no child, or two, is a ValueError: the search would be incomplete."""
    steps = np.full((len(LRS), len(starts)), np.nan)
    jobs: list[list[str | None]] = [[None] * len(starts) for _ in LRS]
    for c in children:
        i = LRS.index(c["values"]["optimizer.lr"])
        j = starts.index(c["values"]["params.start"])
        if not np.isnan(steps[i, j]):
            raise ValueError(f"two children for lr {LRS[i]:g}, start {j}")
        if c["status"] == "succeeded":
            steps[i, j] = math.inf if c["metric"] is None else float(c["metric"])
        elif c["status"] == "failed":
            steps[i, j] = math.inf
        else:
            raise ValueError(f"child #{c['number']} is {c['status']}: {c.get('error')}")
        jobs[i][j] = c["job_id"]
    if np.isnan(steps).any():
        raise ValueError(f"{int(np.isnan(steps).sum())} (lr, start) cells have no child")
    return steps, jobs


def differing(a: np.ndarray, b: np.ndarray) -> int:
    """How many cells of two steps tables differ (inf equal to inf)."""
    return int((np.where(np.isfinite(a), a, -1) != np.where(np.isfinite(b), b, -1)).sum())


def run_sweeps(
    dz: Any, bodies: list[dict[str, Any]], max_sweeps: int, poll: float = 5.0
) -> list[dict[str, Any]]:
    """Every body as a sweep, at most ``max_sweeps`` running at once (the rest wait here;
    a 429 from the service, another sweep of this owner or no active-job slot, waits
    too); the finished sweeps' tables (``GET /v1/sweeps/{id}``) in the bodies' order."""
    import deepzoo

    pending = list(enumerate(bodies))
    running: dict[int, str] = {}
    done: dict[int, dict[str, Any]] = {}
    while pending or running:
        while pending and len(running) < max_sweeps:
            k, body = pending[0]
            try:
                sweep = dz.sweeps.create(
                    body["spec"], body["grid"], metric=body["metric"], goal=body["goal"],
                    name=body["name"], parallel=16,
                )  # fmt: skip
            except deepzoo.ProblemError as exc:
                if exc.status != 429:
                    raise
                print(f"<!-- 429, waiting: {exc.detail} -->", flush=True)
                break
            pending.pop(0)
            running[k] = sweep.id
        time.sleep(poll)
        for k, sweep_id in list(running.items()):
            table = dz.sweeps.get(sweep_id)
            if table.done:
                done[k] = table.raw
                del running[k]
                print(f"<!-- {bodies[k]['name']}: {table.status}, {table.counts} -->", flush=True)
    return [done[k] for k in range(len(bodies))]


def via_sweeps(
    url: str | None, cases: list[Case], n_starts: int, budget: int, tol: float, max_sweeps: int
) -> dict[str, Any]:
    """Part 1's lr search through the service (see the module doc), beside the in-process
    grid's picks on the same starts and on all of ``TUNE_SEEDS``."""
    import deepzoo

    if not 1 <= n_starts <= min(len(TUNE_SEEDS), MAX_SWEEP_TRIALS // len(LRS)):
        raise SystemExit(f"--tune-starts: 1 .. {MAX_SWEEP_TRIALS // len(LRS)}")
    dz = deepzoo.Client(url or None)
    dz.get("/v1/models")  # fail now on a wrong URL or key, not after the in-process grid
    out: dict[str, Any] = {"url": dz.url, "tune_starts": TUNE_SEEDS[:n_starts], "cases": []}
    for case in cases:
        land = case.landscape()
        starts = [start(land, s).tolist() for s in TUNE_SEEDS[:n_starts]]
        t0 = time.perf_counter()
        local_steps, local_gaps = first_order_run(land, TUNE_SEEDS, budget, tol)
        local_s = time.perf_counter() - t0
        bodies = [sweep_body(case, rule, starts, budget, tol) for rule in FIRST_ORDER]
        t0 = time.perf_counter()
        tables = run_sweeps(dz, bodies, max_sweeps)
        wall = time.perf_counter() - t0
        f_star = land.minimum
        assert f_star is not None
        rows = []
        for r, (rule, table) in enumerate(zip(FIRST_ORDER, tables, strict=True)):
            steps, jobs = sweep_steps(table["children"], starts)
            gap = np.full(steps.shape, np.nan)
            if not np.isfinite(np.median(steps, axis=1)).any():  # the fallback reads the gaps
                for i, j in np.ndindex(steps.shape):
                    job = dz.job(jobs[i][j])
                    if job.status == "succeeded" and job.metrics.get("loss") is not None:
                        gap[i, j] = float(job.metrics["loss"]) - f_star
            via = pick_lr(steps, gap)
            same = pick_lr(local_steps[r][:, :n_starts], local_gaps[r][:, :n_starts])
            full = pick_lr(local_steps[r], local_gaps[r])
            rows.append(
                {
                    "optimizer": rule,
                    "sweep": table["id"],
                    "lr_sweeps": LRS[via],
                    "lr_in_process": LRS[same],
                    "lr_in_process_10": LRS[full],
                    "median_sweeps": _num(float(np.median(steps[via]))),
                    "median_in_process": _num(float(np.median(local_steps[r][same, :n_starts]))),
                    "steps_sweeps": [[_num(x) for x in row] for row in steps],
                    "steps_in_process": [
                        [_num(x) for x in row] for row in local_steps[r][:, :n_starts]
                    ],
                    "cells_differing": differing(steps, local_steps[r][:, :n_starts]),
                    "failed": sorted(
                        {str(c["error"]) for c in table["children"] if c["status"] == "failed"}
                    ),
                }
            )
        jobs_count = sum(len(t["children"]) for t in tables)
        out["cases"].append(
            {
                "landscape": case.label,
                "jobs": jobs_count,
                "sweeps_wall_seconds": wall,
                "seconds_per_job": wall / jobs_count,
                "in_process_seconds": local_s,
                "rows": rows,
            }
        )
        print(
            f"\n{case.label}: {jobs_count} jobs in {wall:.0f} s ({wall / jobs_count:.2f} s a "
            f"job) through the service; the in-process grid (10 starts) {local_s:.0f} s\n"
        )
        print(
            f"| optimizer | lr: sweeps ({n_starts} starts) | in process, same starts | "
            "in process, 10 starts | median steps: sweeps / in process | cells differing |"
        )
        print("|---|---|---|---|---|---|")
        for row in rows:
            med = " / ".join(
                "—" if m is None else f"{m:,.0f}"
                for m in (row["median_sweeps"], row["median_in_process"])
            )
            print(
                f"| `{row['optimizer']}` | {row['lr_sweeps']:.2g} | {row['lr_in_process']:.2g} | "
                f"{row['lr_in_process_10']:.2g} | {med} | {row['cells_differing']} |",
                flush=True,
            )
    return out


PICTURES = Path(__file__).resolve().parents[1] / "docs" / "img"
PARTS = ("table", "adam", "newton", "cost", "pictures")


def pictures() -> list[str]:
    """The service's trajectory.png on rosenbrock, 1,500 steps from the landscape's start,
    to docs/img: momentum at the lr the table picks (1e-3), and Adam at lr 1, which
    touches the minimum (f − f* ≤ 1e-6 at step 706) and leaves it again."""
    from app.plots import trajectory_png
    from app.trajectories import view
    from models.optim_lab import plane_loss

    written = []
    for name, lr in (("momentum", 1e-3), ("adam", 1.0)):
        data = load_data("rosenbrock")
        p = OptimLabParams()
        module = FAMILY.build(p, data.info)
        assert isinstance(module, Point)
        first = module.w.detach().tolist()
        ctx = LocalContext(steps=1_500, optimizer=OptimizerSpec(name=name, lr=lr))  # type: ignore[arg-type]
        FAMILY.fit(module, data, p, ctx)
        path = np.array([first] + [[m["w0"], m["w1"]] for _, m in ctx.history if "w0" in m])
        xs, ys = view(data.info.extra["bounds"], [path])
        gx, gy = np.meshgrid(xs, ys)
        grid = torch.tensor(np.stack([gx.ravel(), gy.ravel()], axis=1))
        loss = plane_loss(module, grid)["loss"].numpy().reshape(gx.shape)
        title = f"optim on rosenbrock · {name} lr {lr:g} · 1,500 steps"
        png = trajectory_png(
            xs, ys, loss, [("", path)], minima=[[1.0, 1.0]], floor=0.0, title=title
        )
        out = PICTURES / f"optim-trajectory-rosenbrock-{name}.png"
        out.write_bytes(png)
        written.append(str(out))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=list(PARTS))
    parser.add_argument("--landscapes", nargs="+", default=None, help="case labels' datasets")
    parser.add_argument("--steps", type=int, default=3_000)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument(
        "--via-sweeps",
        nargs="?",
        const="",
        default=None,
        metavar="URL",
        help="tune part 1's lrs through POST /v1/sweeps instead (default URL: DEEPZOO_URL, "
        "else make run's http://127.0.0.1:8000)",
    )
    parser.add_argument("--tune-starts", type=int, default=6, help="with --via-sweeps")
    parser.add_argument("--max-sweeps", type=int, default=10, help="with --via-sweeps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.via_sweeps is not None:
        cases = [c for c in CASES if args.landscapes is None or c.dataset in args.landscapes]
        found = via_sweeps(
            args.via_sweeps, cases, args.tune_starts, args.steps, args.tol, args.max_sweeps
        )
        names = "all" if args.landscapes is None else "-".join(args.landscapes)
        save(f"optim_lab-sweeps-{names}", {"tol": args.tol, "budget": args.steps, **found})
        return
    result: dict[str, Any] = {
        "tol": args.tol,
        "budget": args.steps,
        "lrs": LRS,
        "tune_seeds": TUNE_SEEDS,
        "report_seeds": REPORT_SEEDS,
        "load_average_before": os.getloadavg(),
    }
    if "table" in args.parts:
        cases = [c for c in CASES if args.landscapes is None or c.dataset in args.landscapes]
        print("| landscape | optimizer | lr | steps to f − f* ≤ tol (seeds 0, 1, 2) |")
        print("|---|---|---|---|")
        result["table"] = table(cases, args.steps, args.tol)
    if "adam" in args.parts:
        result["adam_first_step"] = adam_first_step()
        print(result["adam_first_step"])
    if "newton" in args.parts:
        result["newton_conditioning"] = newton_conditioning(args.tol)
    if "cost" in args.parts:
        result["newton_cost"] = newton_cost()
    if "pictures" in args.parts:
        result["pictures"] = pictures()
    result["load_average_after"] = os.getloadavg()
    name = "optim_lab" if args.landscapes is None else "optim_lab-" + "-".join(args.landscapes)
    if set(args.parts) != set(PARTS):
        name += "-" + "-".join(args.parts)
    save(name, result)


if __name__ == "__main__":
    main()
