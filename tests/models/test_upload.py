"""``models.data.upload``: properties over random bytes, CSV-ish text and NPZ variants (a
dataset or an ``UploadError`` naming a form field, never anything else), the fixed split,
and the canonical form's round trip."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.data.upload import Parsed, UploadError, load_upload, parse, split_sizes
from tests.support.uploads import NAMES, csv_text, npz_variant

FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
FIELDS = {"file", "target", "task"}


def check(blob: bytes, target: str | None = None, task: Any = None) -> Parsed | None:
    try:
        parsed = parse(blob, target=target, task=task)
    except UploadError as exc:
        assert exc.field in FIELDS and exc.status in (413, 422) and exc.message
        return None
    assert parsed.x.dtype == np.float32 and parsed.y.dtype == np.float32
    assert len(parsed.x) == len(parsed.y) >= 10
    assert np.isfinite(parsed.x).all() and np.isfinite(parsed.y).all()
    ds = load_upload(
        parsed.canonical(), name="ds_t", task=parsed.task, n_classes=parsed.n_classes, seed=3
    )
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == len(parsed.x)
    if parsed.task == "classification":
        assert parsed.n_classes is not None and int(ds.y_train.max()) < parsed.n_classes
    return parsed


@FAST
@given(blob=st.binary(max_size=300), target=st.one_of(st.none(), NAMES))
def test_random_bytes(blob: bytes, target: str | None) -> None:
    check(blob, target)


@FAST
@given(case=csv_text(), task=st.sampled_from([None, "regression", "classification"]))
def test_csv_like_text(case: tuple[bytes, str | None], task: Any) -> None:
    check(*case, task=task)


@FAST
@given(blob=npz_variant(), task=st.sampled_from([None, "regression", "classification"]))
def test_npz_variants(blob: bytes, task: Any) -> None:
    check(blob, task=task)


def test_split_is_fixed_by_the_seed() -> None:
    x = np.arange(100, dtype=np.float32).reshape(50, 2)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=x[:, :1])
    parsed = parse(buf.getvalue())
    blob = parsed.canonical()
    a = load_upload(blob, name="ds_a", task="regression", n_classes=None, seed=7)
    b = load_upload(blob, name="ds_a", task="regression", n_classes=None, seed=7)
    c = load_upload(blob, name="ds_a", task="regression", n_classes=None, seed=8)
    assert a.sha256() == b.sha256() != c.sha256()
    assert (len(a.x_train), len(a.x_val), len(a.x_test)) == split_sizes(50) == (35, 5, 10)
    assert a.info.input_shape == (2,) and a.info.target_dim == 1


@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([0, 1] * 10, "classification"),
        (list(range(20)), "regression"),
        ([0.5, 1] * 10, "regression"),
    ],
)
def test_task_inference(values: list[float], task: str) -> None:
    text = "a,y\n" + "\n".join(f"{i},{v}" for i, v in enumerate(values))
    assert parse(text.encode(), target="y").task == task
