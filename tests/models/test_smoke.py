"""Every registered family on its smoke row (tests/support/smoke.py): build, fit a few
steps, resume bit-exactly, round-trip a checkpoint through safetensors, and answer each
capability it declares."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from models.checkpoint import dump_state, load_state
from models.data import DataKind, load_data
from models.family import LIKELIHOOD_KINDS, Family, Params
from models.registry import REGISTRY
from tests.support.data import RecordingContext, smoke_data
from tests.support.smoke import (
    CHECKERS,
    SMOKE,
    Probe,
    answers_or_refusals,
    check_all,
    declared,
    smoke_params,
    unchecked,
    with_capability,
)

CASES = [(name, ds) for name, row in SMOKE.items() for ds in row.datasets]


def test_every_family_has_a_smoke_row() -> None:
    assert SMOKE.keys() == REGISTRY.keys()
    for name, row in SMOKE.items():
        assert set(row.datasets) <= REGISTRY[name].datasets, name
        ((unit, n),) = row.train.items()
        assert unit in ("epochs", "steps") and n >= 2, name


def test_a_capability_without_a_checker_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A family declaring what no checker answers fails its smoke test (never skips)."""
    monkeypatch.delitem(CHECKERS, "trajectory")  # as if its checker were never written
    fam, data = REGISTRY["mlp"], load_data("moons")
    acting = with_capability(fam, "trajectory")
    assert unchecked(acting) == {"trajectory"}
    params = smoke_params(fam)
    probe = Probe(acting, params, fam.build(params, data.info).eval(), data)
    with pytest.raises(AssertionError, match=r"declares \['trajectory'\]: add a checker"):
        check_all(probe)


@pytest.mark.parametrize("name", list(SMOKE))
def test_family_record_is_complete(name: str) -> None:
    fam = REGISTRY[name]
    params_cls: Any = fam.params
    assert fam.name == name and fam.description and fam.default_epochs > 0
    schema = fam.params.model_json_schema()
    for field, prop in schema["properties"].items():
        assert prop.get("description"), f"{name}.{field} has no description"
    with pytest.raises(ValidationError):
        params_cls(not_a_field=1)
    for ds in fam.datasets:
        assert load_data(ds).info.name == ds


@pytest.mark.parametrize(
    ("name", "dataset"), [(n, d) for n in SMOKE for d in sorted(REGISTRY[n].datasets)]
)
def test_builds_and_answers_on_every_dataset(name: str, dataset: str) -> None:
    """Untrained, on each dataset it takes: every declared capability answers in shape."""
    fam, data = REGISTRY[name], load_data(dataset)
    params = smoke_params(fam)
    check_all(Probe(fam, params, fam.build(params, data.info).eval(), data, n=3))


def _context(name: str, **kw: Any) -> RecordingContext:
    row = SMOKE[name]
    return RecordingContext(**{**row.train, **kw}, batch_size=row.batch_size)


def _build(fam: Family, params: Params, data: DataKind) -> nn.Module:
    torch.manual_seed(0)  # the same initial weights for every run, as the runner seeds
    return fam.build(params, data.info)


@cache
def fitted(name: str, dataset: str) -> tuple[nn.Module, RecordingContext]:
    """The family trained on its smoke budget, once per session (read-only for the tests)."""
    fam, data = REGISTRY[name], smoke_data(dataset)
    params = smoke_params(fam)
    module = _build(fam, params, data)
    ctx = _context(name)
    fam.fit(module, data, params, ctx)
    return module, ctx


@pytest.mark.parametrize(("name", "dataset"), CASES)
def test_fit_reports_finite_progress_to_the_end(name: str, dataset: str) -> None:
    """What the context saw: finite metrics, progress to the total, a checkpoint at the end."""
    _, ctx = fitted(name, dataset)
    assert ctx.history and all(math.isfinite(v) for _, m in ctx.history for v in m.values())
    assert ctx.last_progress is not None
    done, total = ctx.last_progress
    assert done == total
    steps = [s for s, _, _ in ctx.checkpoints]
    assert steps == sorted(set(steps)) and steps[-1] == done
    assert all(0 < s <= done for s, _ in ctx.history)


@pytest.mark.parametrize(("name", "dataset"), CASES)
def test_resume_continues_exactly_where_it_stopped(name: str, dataset: str) -> None:
    """Half the budget, checkpoint, resume for the rest: the same weights, bit for bit,
    as one straight run; the resumed run logs and checkpoints only what came after."""
    fam, data = REGISTRY[name], smoke_data(dataset)
    params = smoke_params(fam)
    straight, _ = fitted(name, dataset)
    ((unit, n),) = SMOKE[name].train.items()

    first = _build(fam, params, data)
    ctx1 = _context(name, **{unit: n // 2})
    fam.fit(first, data, params, ctx1)
    stopped_at = ctx1.checkpoints[-1][0]
    resumed = fam.build(params, data.info)
    ctx2 = _context(name, resume=ctx1.checkpoints[-1][1], best=ctx1.best)
    ctx2.set_rng(ctx1.rng[-1])  # the runner restores RNG states with the checkpoint
    fam.fit(resumed, data, params, ctx2)

    assert ctx2.history and all(s > stopped_at for s, _ in ctx2.history)
    assert ctx2.checkpoints and all(s > stopped_at for s, _, _ in ctx2.checkpoints)
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


class AliasingContext(RecordingContext):
    """Keeps each offered state as given, beside a copy taken when it was offered: the
    runner writes an offered checkpoint later (``checkpoint_every``, the minimum interval,
    a best one with the next write) and scores the best at the end, so a state aliasing
    live tensors would be saved, and ranked, with weights from after its step."""

    def checkpoint(self, step: int, state: dict[str, Any], *, best: bool = False) -> None:
        super().checkpoint(step, state, best=best)
        self.checkpoints[-1] = (step, state, best)  # the family's own object
        self.offered.append(load_state(dump_state(state)))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.offered: list[dict[str, Any]] = []


@pytest.mark.parametrize("name", list(SMOKE))
def test_offered_checkpoints_are_snapshots(name: str) -> None:
    fam, data = REGISTRY[name], smoke_data(SMOKE[name].dataset)
    params = smoke_params(fam)
    row = SMOKE[name]
    ctx = AliasingContext(**row.train, batch_size=row.batch_size)
    fam.fit(_build(fam, params, data), data, params, ctx)
    assert len(ctx.checkpoints) == len(ctx.offered) >= 1
    for (step, state, _), then in zip(ctx.checkpoints, ctx.offered, strict=True):
        now = load_state(dump_state(state))
        for key, value in then["model"].items():
            assert torch.equal(value, now["model"][key]), f"step {step}: model.{key} changed"


VARIANTS = [(name, v) for name, row in SMOKE.items() for v in row.variants]


@pytest.mark.parametrize(("name", "overrides"), VARIANTS, ids=[f"{n}-{v}" for n, v in VARIANTS])
def test_a_variant_resumes_exactly_and_round_trips(name: str, overrides: dict[str, Any]) -> None:
    """A row's variant on its first dataset: half the budget then a resume gives the
    straight run's weights bit for bit (a fresh build draws its own order; the checkpoint
    must carry the trained one), and the served checkpoint answers as the module does."""
    fam, data = REGISTRY[name], smoke_data(SMOKE[name].dataset)
    params = smoke_params(fam, **overrides)
    ((unit, n),) = SMOKE[name].train.items()
    straight = _build(fam, params, data)
    ctx = _context(name)
    fam.fit(straight, data, params, ctx)

    first = _build(fam, params, data)
    ctx1 = _context(name, **{unit: n // 2})
    fam.fit(first, data, params, ctx1)
    torch.manual_seed(1)  # another order than the one trained
    resumed = fam.build(params, data.info)
    ctx2 = _context(name, resume=ctx1.checkpoints[-1][1], best=ctx1.best)
    ctx2.set_rng(ctx1.rng[-1])
    fam.fit(resumed, data, params, ctx2)
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(v, w), k

    torch.manual_seed(2)
    fresh = fam.build(params, data.info)
    fresh.load_state_dict(load_state(dump_state(ctx.served()))["model"])
    a = answers_or_refusals(Probe(fam, params, straight.eval(), data, n=7))
    b = answers_or_refusals(Probe(fam, params, fresh.eval(), data, n=7))
    assert a.keys() == b.keys() == {str(c) for c in declared(fam)}
    for capability, out in a.items():
        other = b[capability]
        if isinstance(out, str) or isinstance(other, str):  # refused: by both, alike
            assert out == other, capability
            continue
        for key, value in out.items():
            assert torch.equal(value, other[key]), f"{capability}: {key}"


@pytest.mark.parametrize(("name", "dataset"), CASES)
def test_checkpoint_round_trip_answers_the_same(name: str, dataset: str) -> None:
    """The last checkpoint through safetensors (models/checkpoint.py) into a fresh build:
    every declared capability answers exactly as the trained module does."""
    fam, data = REGISTRY[name], smoke_data(dataset)
    params = smoke_params(fam)
    module, ctx = fitted(name, dataset)
    state = load_state(dump_state(ctx.served()))
    fresh = fam.build(params, data.info)
    fresh.load_state_dict(state["model"])
    a = check_all(Probe(fam, params, module.eval(), data, n=7))
    b = check_all(Probe(fam, params, fresh.eval(), data, n=7))
    assert a.keys() == b.keys() == {str(c) for c in declared(fam)}
    for capability, out in a.items():
        assert out.keys() == b[capability].keys(), capability
        for key, value in out.items():
            assert torch.equal(value, b[capability][key]), f"{capability}: {key}"


@pytest.mark.parametrize("name", list(SMOKE))
def test_every_declared_capability_is_checked(name: str) -> None:
    fam = REGISTRY[name]
    assert declared(fam) and not unchecked(fam), sorted(map(str, unchecked(fam)))


@pytest.mark.parametrize("name", list(SMOKE))
def test_a_family_that_scores_inputs_reports_its_test_likelihood(name: str) -> None:
    """LOG_PROB makes a likelihood family: it declares the test NLL the leaderboard ranks."""
    fam = REGISTRY[name]
    if "log_prob" in declared(fam):
        assert fam.likelihood is not None, f"{name} declares log_prob but no LikelihoodReport"


@pytest.mark.parametrize(
    ("name", "dataset"), [(n, d) for n, d in CASES if REGISTRY[n].likelihood is not None]
)
def test_the_likelihood_report_names_metrics_the_fit_logs(name: str, dataset: str) -> None:
    """Every metric the report names for this data is among the final step's, finite, and
    bits per dimension are the NLL over D ln 2."""
    fam, info = REGISTRY[name], load_data(dataset).info
    report = fam.likelihood
    assert report is not None
    _, ctx = fitted(name, dataset)
    last = ctx.history[-1][0]
    final = {k: v for step, m in ctx.history if step == last for k, v in m.items()}
    assert set(report.metric_names(info)) <= final.keys(), (report, sorted(final))
    assert all(math.isfinite(final[k]) for k in report.metric_names(info))
    assert report.kind_for(info, smoke_params(fam)) in LIKELIHOOD_KINDS
    bits = report.bits_metric(info)
    assert (bits is None) == (info.levels is None)
    if bits is not None:
        dims = math.prod(info.input_shape)
        assert final[bits] == pytest.approx(final[report.nll] / (dims * math.log(2)), rel=1e-5)
