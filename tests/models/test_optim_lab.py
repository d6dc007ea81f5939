"""The optimizer lab (``models.optim_lab``) and its landscapes: the minima where they are
said to be, the quadratic's condition number, the params a job may give, what a fit logs,
Newton in one step whatever the condition number, and Adam's uncorrected first step."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from models.context import LocalContext
from models.data import LANDSCAPES, Landscape, load_data
from models.data.builtin import LOGISTIC_ARGMIN, LOGISTIC_MINIMUM
from models.data.landscapes import quadratic_matrix
from models.optim import OptimizerSpec
from models.optim_lab import FAMILY, OptimLabParams, Point, plane_loss


def run(
    landscape: str, optimizer: OptimizerSpec, steps: int, **params: object
) -> tuple[Point, LocalContext]:
    data = load_data(landscape)
    p = OptimLabParams(**params)  # type: ignore[arg-type]
    module = FAMILY.build(p, data.info)
    assert isinstance(module, Point)
    ctx = LocalContext(steps=steps, optimizer=optimizer)
    FAMILY.fit(module, data, p, ctx)
    return module, ctx


def logged(ctx: LocalContext, name: str) -> list[tuple[int, float]]:
    return [(s, m[name]) for s, m in ctx.history if name in m]


@pytest.mark.parametrize("name", sorted(LANDSCAPES))
def test_the_minima_are_stationary_points_of_the_stated_value(name: str) -> None:
    land = load_data(name)
    assert isinstance(land, Landscape) and land.minimum is not None and land.minima
    for m in land.minima:
        w = torch.tensor(m, dtype=torch.float64, requires_grad=True)
        f = land(w)
        (g,) = torch.autograd.grad(f, w)
        assert f.item() == pytest.approx(land.minimum, abs=1e-9), m
        assert g.norm().item() < 1e-4, m
        assert torch.linalg.eigvalsh(torch.autograd.functional.hessian(land, w.detach())).min() > 0
    start = torch.tensor(land.start, dtype=torch.float64)
    assert land(start).item() > land.minimum + 0.1  # a start with something to do


def test_the_logistic_minimum_is_newtons_fixed_point() -> None:
    """The stated argmin and value: Newton's step from there moves by < 1e-12."""
    land = load_data("logistic")
    w = torch.tensor(LOGISTIC_ARGMIN, dtype=torch.float64)
    g = torch.autograd.functional.jacobian(land, w)
    h = torch.autograd.functional.hessian(land, w)
    assert torch.linalg.solve(h, g).norm().item() < 1e-12
    assert land(w).item() == pytest.approx(LOGISTIC_MINIMUM, rel=1e-15)


@pytest.mark.parametrize(("dim", "kappa"), [(2, 10.0), (5, 1e3), (40, 1e6)])
def test_the_quadratic_has_the_condition_number_asked(dim: int, kappa: float) -> None:
    a = quadratic_matrix(dim, kappa)
    torch.testing.assert_close(a, a.T)
    lam = torch.linalg.eigvalsh(a)
    assert lam[0].item() == pytest.approx(1.0) and lam[-1].item() == pytest.approx(kappa)
    # no eigenvector along an axis: a diagonal preconditioner cannot undo it
    _, vectors = torch.linalg.eigh(a)
    assert vectors.abs().max().item() < 0.999
    land = load_data("quadratic").resized(dim, condition_number=kappa)
    w = torch.randn(3, dim, dtype=torch.float64)
    torch.testing.assert_close(land(w), 0.5 * ((w @ a) * w).sum(-1))


def test_params_reach_the_model() -> None:
    info = load_data("quadratic").info
    m = FAMILY.build(OptimLabParams(dim=4, condition_number=50.0, start=[1, 2, 3, 4]), info)
    assert isinstance(m, Point) and m.w.tolist() == [1, 2, 3, 4] and m.w.dtype == torch.float64
    assert m.landscape.params["condition_number"] == 50.0 and m.landscape.dim == 4
    default = FAMILY.build(OptimLabParams(dim=4), info)
    assert isinstance(default, Point) and default.w.tolist() == [1.5, 1.0, 1.0, 1.0]
    # the 2-D landscapes ignore the quadratic's settings; a start must fit the dimension
    rosen = FAMILY.build(OptimLabParams(dim=4), load_data("rosenbrock").info)
    assert isinstance(rosen, Point) and rosen.w.shape == (2,)
    with pytest.raises(ValueError, match="start has 3 coordinates; rosenbrock takes points of 2"):
        FAMILY.build(OptimLabParams(start=[0, 0, 0]), load_data("rosenbrock").info)
    with torch.device("meta"):  # the API counts parameters this way
        assert FAMILY.build(OptimLabParams(dim=500), info).w.numel() == 500


def test_a_fit_logs_the_path_and_when_it_converged() -> None:
    spec = OptimizerSpec(name="sgd", lr=0.05)
    module, ctx = run("quadratic", spec, 300, condition_number=10.0)
    steps = [s for s, _ in logged(ctx, "loss")]
    assert steps == list(range(1, 301))
    land = module.landscape
    (first_w0,) = [v for s, v in logged(ctx, "w0") if s == 300]
    assert first_w0 == module.w[0].item()
    losses = [v for _, v in logged(ctx, "loss")]
    assert losses[-1] == pytest.approx(land(module.w.detach()).item())
    assert all(b <= a for a, b in itertools.pairwise(losses))  # sgd below 2/L
    ((at, value),) = logged(ctx, "converged_step")
    assert at == value and losses[at - 1] <= 1e-6 < losses[at - 2]
    # the gradient norm logged at step t is the one at w_{t−1}: the start's at step 1
    start = torch.tensor(land.start, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(land(start), start)
    assert logged(ctx, "grad_norm")[0][1] == pytest.approx(g.norm().item())
    assert logged(ctx, "step_norm")[0][1] == pytest.approx(0.05 * g.norm().item())


# heavy ball (μ 0.9, η 0.5) on f = ½w² (the 1-D quadratic) from w = 1, by hand: v ← 0.9v + w,
# w ← w − 0.5v gives w = 0.5, −0.2, −0.73, −0.842, −0.5218, 0.02728, so f = 0.125, 0.02,
# 0.26645, 0.354482, 0.13614, 0.000372: below 0.15 at steps 1 and 2, above at 3 and 4
# (it touched and left), below from 5 on
HAND = {"dim": 1, "start": [1.0], "tolerance": 0.15}
HAND_LOSSES = [0.125, 0.02, 0.26645, 0.354482, 0.13613762, 0.0003720992]


def test_settled_step_is_where_the_tolerance_holds_to_the_end_not_the_first_touch() -> None:
    spec = OptimizerSpec(name="momentum", lr=0.5)
    _, ctx = run("quadratic", spec, 6, **HAND)
    assert [v for _, v in logged(ctx, "loss")] == pytest.approx(HAND_LOSSES)
    assert logged(ctx, "converged_step") == [(1, 1.0)]  # the first touch
    assert logged(ctx, "settled_step") == [(6, 5.0)]  # logged once, at the last step
    # a run that ends above the tolerance (step 4) never settled: nothing logged
    _, ctx = run("quadratic", spec, 4, **HAND)
    assert logged(ctx, "converged_step") == [(1, 1.0)] and logged(ctx, "settled_step") == []
    # never above it: settled from the first step, as the bench counts
    _, ctx = run("quadratic", spec, 6, **{**HAND, "tolerance": 0.5})
    assert logged(ctx, "settled_step") == [(6, 1.0)]


class StopAfter(LocalContext):
    """Asks the fit to stop once it has offered a checkpoint at step ``after``."""

    def __init__(self, after: int, **kwargs: object) -> None:
        super().__init__(keep_checkpoints=True, **kwargs)  # type: ignore[arg-type]
        self.after = after

    def should_stop(self) -> bool:
        return any(s >= self.after for s, _, _ in self.checkpoints)


def test_settled_step_survives_a_resume() -> None:
    """Stopped after step 5 (the last step above the tolerance was 4), resumed for step 6:
    the checkpoint carries the last step above, so the resumed run logs 5, not 6 (the
    resume's own step) nor 1 (a fresh count)."""
    spec = OptimizerSpec(name="momentum", lr=0.5)
    data = load_data("quadratic")
    p = OptimLabParams(**HAND)  # type: ignore[arg-type]
    first = StopAfter(5, steps=6, optimizer=spec)
    FAMILY.fit(FAMILY.build(p, data.info), data, p, first)
    step, state, _ = first.checkpoints[-1]
    assert step == 5 and state["last_above"] == 4 and logged(first, "settled_step") == []
    second = LocalContext(steps=6, optimizer=spec, resume=state)
    FAMILY.fit(FAMILY.build(p, data.info), data, p, second)
    assert logged(second, "settled_step") == [(6, 5.0)]


def test_a_long_run_logs_at_most_max_logged_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.optim_lab as lab

    monkeypatch.setattr(lab, "MAX_LOGGED", 7)
    _, ctx = run("rosenbrock", OptimizerSpec(name="adam", lr=0.01), 20)
    assert [s for s, _ in logged(ctx, "loss")] == [3, 6, 9, 12, 15, 18, 20]


@pytest.mark.parametrize("kappa", [1.0, 1e2, 1e4, 1e6])
def test_newton_takes_one_step_on_the_quadratic_whatever_its_condition(kappa: float) -> None:
    """The notes' w − H⁻¹g: one undamped step to the minimum of a 20-D quadratic at any
    condition number (f = 0 up to rounding), where gradient descent at its best rate
    needs ~κ log(1/tol) steps."""
    module, ctx = run(
        "quadratic", OptimizerSpec(name="newton", lr=1.0), 1, dim=20, condition_number=kappa
    )
    assert logged(ctx, "converged_step") == [(1, 1.0)]
    assert module.w.detach().abs().max().item() < 1e-9


def test_adam_without_bias_correction_takes_a_first_step_of_3_16_lr() -> None:
    """m₁ = (1−β₁)g, v₁ = (1−β₂)g²: each coordinate moves lr·(1−β₁)/√(1−β₂) ≈ 3.16·lr at
    the first step, against lr with the correction; visible in the logged path."""
    lr = 0.01
    first = {}
    for name in ("adam", "adam_no_bias_correction"):
        _, ctx = run("rosenbrock", OptimizerSpec(name=name, lr=lr), 1)  # type: ignore[arg-type]
        first[name] = logged(ctx, "step_norm")[0][1] / math.sqrt(2)  # both coordinates move alike
    assert first["adam"] == pytest.approx(lr, rel=1e-6)
    assert first["adam_no_bias_correction"] == pytest.approx(lr * 0.1 / math.sqrt(0.001), rel=1e-6)


def test_a_diverging_optimizer_fails_the_job() -> None:
    from models.family import Diverged

    with pytest.raises(Diverged):
        run("rosenbrock", OptimizerSpec(name="sgd", lr=0.1), 200)


def test_the_plane_is_the_first_two_coordinates_at_the_minimum() -> None:
    module = FAMILY.build(
        OptimLabParams(dim=6, condition_number=100.0), load_data("quadratic").info
    )
    points = torch.tensor([[0.5, -0.25], [0.0, 0.0]], dtype=torch.float64)
    out = plane_loss(module, points)["loss"]
    whole = torch.zeros(2, 6, dtype=torch.float64)
    whole[:, :2] = points
    torch.testing.assert_close(out, module.landscape(whole))
    assert out[1].item() == 0.0
    torch.testing.assert_close(plane_loss(module, whole)["loss"], out)  # whole points as they are


def test_the_benchs_batched_runs_are_the_plain_rules() -> None:
    """bench/optim_lab.py moves every rule, lr and start at once (each rule at η = 1 on a
    shadow, each row scaled by its η): the same losses as each rule run alone."""
    from bench.optim_lab import FIRST_ORDER, LRS, first_order_run, start
    from models.optim import build_optimizer

    land = load_data("beale")
    _, gaps = first_order_run(land, [0, 1], 25, 1e-30)
    for r, name in enumerate(FIRST_ORDER):
        for i in (2, 4):  # lr 1e-3, 1e-2
            w = start(land, 1).requires_grad_()
            opt = build_optimizer(OptimizerSpec(name=name, lr=LRS[i]), [w])
            for _ in range(25):
                opt.zero_grad()
                land(w).backward()
                opt.step()
            plain = land(w.detach()).item()
            if not math.isfinite(plain):  # diverged: the batched run parks it, nan
                assert math.isnan(gaps[r, i, 1]), name
                continue
            assert gaps[r, i, 1] == pytest.approx(plain, rel=1e-9, abs=1e-12), name


def test_the_familys_settled_step_is_the_benchs_steps_to_tolerance() -> None:
    """The sweeps rank the lab's children by ``settled_step``; the bench's in-process grid
    counts its own (``first_order_run``). The same number for every rule at two rates from
    a perturbed start (none where the bench has inf), so both pick from the same table."""
    from bench.optim_lab import FIRST_ORDER, LRS, first_order_run, start

    land = load_data("quadratic")
    budget = 200
    steps, _ = first_order_run(land, [100], budget, 1e-6)
    point = start(land, 100).tolist()
    seen = set()
    for r, name in enumerate(FIRST_ORDER):
        for i in (5, 6):  # lr 0.032, 0.1
            spec = OptimizerSpec(name=name, lr=LRS[i])  # type: ignore[arg-type]
            _, ctx = run("quadratic", spec, budget, start=point)
            got = [v for _, v in logged(ctx, "settled_step")]
            want = steps[r, i, 0]
            assert got == ([] if math.isinf(want) else [want]), (name, LRS[i])
            seen.add(math.isinf(want))
    assert seen == {True, False}  # both kinds of cell were compared


INF = math.inf


def test_the_lr_pick_is_the_smallest_median_then_the_smaller_mean() -> None:
    """bench/optim_lab.py's ``pick_lr`` (the in-process grid's rule and the sweeps'), on a
    table of steps (lr × start) made so each tie-break decides: rows 2, 3 and 5 share the
    median 65; 3 has the smallest mean (55 against 65), 5 a start that never settles
    (counted as 1e18 in the mean, not skipped); rows 1 and 6 have fewer settled starts
    than half, so an infinite median, whatever their settled ones."""
    from bench.optim_lab import LRS, pick_lr

    steps = np.array(
        [
            [INF, INF, INF, INF],
            [1, 2, INF, INF],
            [50, 60, 70, 80],
            [10, 60, 70, 80],
            [60, 66, 70, INF],
            [20, 30, 100, INF],
            [5, 5, INF, INF],
            [INF, INF, INF, INF],
            [INF, INF, INF, INF],
        ]
    )
    assert len(steps) == len(LRS)
    gap = np.full(steps.shape, np.nan)
    assert pick_lr(steps, gap) == 3
    steps[3, 0] = 50  # its mean rises to 65: the tie goes to the first of 2 and 3
    assert pick_lr(steps, gap) == 2


def test_with_no_rate_settling_the_pick_is_the_smallest_median_final_gap() -> None:
    """Nothing settles: the smallest median f − f* at the end, a diverged start (nan)
    left out of its rate's median, a rate whose every start diverged never picked."""
    from bench.optim_lab import LRS, pick_lr

    steps = np.full((len(LRS), 4), INF)
    gap = np.full((len(LRS), 4), 1.0)
    gap[0] = np.nan  # all diverged
    gap[1] = [1e-3, 2e-3, np.nan, np.nan]  # median of the two that ran: 1.5e-3
    gap[2] = [1e-4, 1e-2, 1e-2, 1e-2]  # 1e-2
    gap[3] = [5e-4, 5e-4, 5e-4, 1.0]  # 5e-4
    assert pick_lr(steps, gap) == 3
    gap[3, 1:3] = 2e-3  # median 2e-3: now rate 1's 1.5e-3 is the smallest
    assert pick_lr(steps, gap) == 1


def test_a_sweeps_children_read_back_as_the_benchs_steps_table() -> None:
    """``sweep_steps``: the children of ``GET /v1/sweeps/{id}`` (best first, in any order)
    placed by their lr and start; a child that succeeded without ``settled_step`` or
    failed is inf; a cancelled child or a missing cell refuses to make a table."""
    from bench.optim_lab import LRS, sweep_steps

    starts = [[0.5, 1.0], [0.25, -1.0]]
    children = []
    for i, lr in enumerate(LRS):
        for j, point in enumerate(starts):
            number = i * len(starts) + j
            status, metric = "succeeded", float(100 * i + j + 1)
            if (i, j) == (0, 1):
                metric = None  # never settled
            if (i, j) == (8, 0):
                status, metric = "failed", None  # diverged
            values = {"optimizer.lr": lr, "params.start": point}
            children.append(
                {"number": number, "values": values, "status": status, "metric": metric,
                 "job_id": f"job_{number}", "error": None}
            )  # fmt: skip
    shuffled = children[::-1]
    steps, jobs = sweep_steps(shuffled, starts)
    assert steps.shape == (len(LRS), 2)
    assert steps[0, 0] == 1 and steps[3, 1] == 302 and steps[7, 0] == 701
    assert steps[0, 1] == INF and steps[8, 0] == INF and steps[8, 1] == 802
    assert jobs[3][1] == "job_7" and jobs[8][0] == "job_16"
    cancelled = [dict(c, status="cancelled") if c["number"] == 5 else c for c in children]
    with pytest.raises(ValueError, match="child #5 is cancelled"):
        sweep_steps(cancelled, starts)
    with pytest.raises(ValueError, match="1 \\(lr, start\\) cells have no child"):
        sweep_steps(children[1:], starts)
    with pytest.raises(ValueError, match="two children"):
        sweep_steps([*children, children[0]], starts)


def test_a_cells_sweep_is_a_valid_request_within_the_trial_cap() -> None:
    """The body ``--via-sweeps`` posts: the service's own request model takes it, 9 rates ×
    6 starts fit under the 64 children of a sweep, the 10-D quadratic carries its size."""
    from app.api.sweeps import SweepRequest
    from app.sweeps import MAX_TRIALS
    from bench.optim_lab import CASES, LRS, MAX_SWEEP_TRIALS, TUNE_SEEDS, start, sweep_body

    assert MAX_SWEEP_TRIALS == MAX_TRIALS
    (case,) = [c for c in CASES if c.dim == 10]
    land = case.landscape()
    starts = [start(land, s).tolist() for s in TUNE_SEEDS[:6]]
    body = sweep_body(case, "nesterov", starts, 3000, 1e-6)
    request = SweepRequest.model_validate(body)
    assert len(request.grid["optimizer.lr"]) * len(request.grid["params.start"]) == 54 <= 64
    assert body["grid"]["optimizer.lr"] == LRS and body["metric"] == "settled_step"
    assert body["spec"]["params"] == {"tolerance": 1e-6, "dim": 10, "condition_number": 1e3}
    assert all(len(p) == 10 for p in body["grid"]["params.start"])
