"""Property-based tests (hypothesis) of inference input parsing and job specs: any JSON
value gives a tensor of the right shape or a 4xx naming the field, never a crash."""

from __future__ import annotations

import math
from typing import Any

from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.api.common import parse_inputs
from app.api.jobs import SPEC_ADAPTER
from app.problems import Problem, validation_errors

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=5),
    st.floats(allow_nan=True, allow_infinity=True),
)  # fmt: skip
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4), max_leaves=20)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@FAST
@given(raw=st.lists(JSON, max_size=6), width=st.sampled_from([1, 2, 3]))
@example(raw=[0, [None]], width=1)  # a number beside a ragged row: was a ValueError (500)
@example(raw=[10**400], width=1)  # beyond any float
def test_inputs_parse_or_name_the_bad_one(raw: list[Any], width: int) -> None:
    try:
        x = parse_inputs(raw, (width,))
    except Problem as p:
        assert 400 <= p.status < 500
        assert p.extra["errors"][0]["path"].startswith("inputs")
        return
    assert x.shape == (len(raw), width)
    assert bool(x.isfinite().all())


@FAST
@given(
    rows=st.lists(
        st.lists(
            st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=2, max_size=2
        ),
        min_size=1,
        max_size=8,
    )
)
def test_well_formed_inputs_round_trip(rows: list[list[float]]) -> None:
    x = parse_inputs(rows, (2,))
    assert [[float(v) for v in r] for r in x.tolist()] == rows


@FAST
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_non_finite_or_out_of_float32_values_are_refused(value: float) -> None:
    try:
        x = parse_inputs([[value]], (1,))
    except Problem as p:
        assert p.status == 422 and p.extra["errors"][0]["path"] == "inputs[0]"
        assert not math.isfinite(value) or abs(value) > 3.4e38
        return
    assert math.isfinite(float(x[0, 0]))


SPEC_PARTS = st.fixed_dictionaries(
    {"model": st.sampled_from(["mlp", "mc_dropout", "nope"]),
     "dataset": st.sampled_from(["moons", "sine_gap", "karate"])},
    optional={"params": st.dictionaries(st.sampled_from(["hidden", "dropout", "activation", "x"]),
                                        JSON, max_size=3),
              "train": st.dictionaries(st.sampled_from(["epochs", "steps", "seed", "device"]),
                                       JSON, max_size=3),
              "optimizer": st.dictionaries(st.sampled_from(["name", "lr", "beta1"]), JSON,
                                           max_size=2)},
)  # fmt: skip


@FAST
@given(spec=SPEC_PARTS)
def test_job_specs_validate_or_fail_with_paths(spec: dict[str, Any]) -> None:
    try:
        SPEC_ADAPTER.validate_python(spec)
    except ValidationError as exc:
        body_errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        errors = validation_errors(RequestValidationError(body_errors))
        assert errors and all(e["path"] and e["path"] != "body" for e in errors), errors
        if spec["model"] == "nope":
            assert [e["path"] for e in errors] == ["model"]
