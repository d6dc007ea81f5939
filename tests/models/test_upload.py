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

FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
FIELDS = {"file", "target", "task"}

GOOD_CELLS = st.sampled_from(["1", "-2.5", "0", "3e4", " 7 ", "2", "1_0"])
BAD_CELLS = st.sampled_from(["", "nan", "inf", "1e39", "abc", '"4,5"', "cat", "\x00"])
NAMES = st.sampled_from(["a", "b", "c", "y", "price"])
ODD_NAMES = st.sampled_from(["", " y ", "a", '"q,r"', "\ufeffa"])


@st.composite
def csv_text(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """Mostly a well-formed table; sometimes one thing wrong with it."""
    names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    n_rows = draw(st.sampled_from([3, 9, 10, 12, 30]))
    rows = [[draw(GOOD_CELLS) for _ in names] for _ in range(n_rows)]
    target: str | None = draw(st.sampled_from(names))
    fault = draw(st.sampled_from(["none", "none", "cell", "name", "ragged", "target", "header"]))
    if fault == "cell":
        rows[draw(st.integers(0, n_rows - 1))][draw(st.integers(0, len(names) - 1))] = draw(
            BAD_CELLS
        )
    elif fault == "name":
        names[draw(st.integers(0, len(names) - 1))] = draw(ODD_NAMES)
    elif fault == "ragged":
        rows[draw(st.integers(0, n_rows - 1))].append("1")
    elif fault == "target":
        target = draw(st.one_of(st.none(), ODD_NAMES))
    lines = [] if fault == "header" else [",".join(names)]
    lines += [",".join(r) for r in rows]
    sep = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    return sep.join(lines).encode(), target


DTYPES = st.sampled_from(["f8", "f4", "i8", "u1", "?", "f2"])
ODD_DTYPES = st.sampled_from(["U3", "c8", "O", "M8[s]", "V4"])


@st.composite
def npz_variant(draw: st.DrawFn) -> bytes:
    """Mostly a well-formed archive; sometimes odd keys, dtypes, values or bytes."""
    rows = draw(st.sampled_from([10, 12, 30]))
    arrays: dict[str, Any] = {
        "x": draw(st.sampled_from([(rows,), (rows, 3), (rows, 2, 2), (rows, 1, 2, 2)])),
        "y": draw(st.sampled_from([(rows,), (rows, 1), (rows, 2)])),
    }
    for key, shape in list(arrays.items()):
        values = np.random.default_rng(rows).normal(size=shape) * 3
        arrays[key] = values.astype(draw(DTYPES))
    fault = draw(st.sampled_from(["none", "none", "keys", "dtype", "value", "rows", "bytes"]))
    if fault == "keys":
        arrays[draw(st.sampled_from(["z", "y"]))] = np.zeros(rows)
        arrays.pop(draw(st.sampled_from(["x", "y", "w"])), None)
    elif fault == "dtype":
        dtype = draw(ODD_DTYPES)
        arrays["x"] = (
            np.zeros(arrays["x"].shape, dtype=dtype)
            if dtype != "O"
            else np.empty(rows, dtype=object)
        )
    elif fault == "value":
        arrays["x"] = arrays["x"].astype("f8")
        arrays["x"].flat[0] = draw(st.sampled_from([np.nan, np.inf, 1e39]))
    elif fault == "rows":
        arrays["y"] = arrays["y"][: draw(st.integers(0, rows - 1))]
    buf = io.BytesIO()
    (np.savez_compressed if draw(st.booleans()) else np.savez)(buf, **arrays)
    blob = buf.getvalue()
    if fault == "bytes":
        cut = draw(st.integers(0, len(blob) - 1))
        if draw(st.booleans()):
            blob = blob[:cut]
        else:
            blob = blob[:cut] + bytes([blob[cut] ^ 0xFF]) + blob[cut + 1 :]
    return blob


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
