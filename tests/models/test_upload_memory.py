"""What one hostile upload makes ``parse`` allocate: bounded by the limits, not by how far
the file inflates. Each case is a small file that used to expand before its refusal (the
figures in docs/security.md); the peak is measured with ``tracemalloc``, which sees
numpy's array buffers as well as Python objects."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from models.data.upload import UploadError, parse
from tests.support.uploads import (
    MiB,
    bool_y_npz,
    long_label_csv,
    long_npy_header,
    many_members_zip,
    many_rows_npz,
    quoted_newlines_csv,
    wide_header_csv,
)

CASES: list[tuple[str, Callable[[], bytes], str | None, int | None]] = [
    ("bool y (1M, 128)", bool_y_npz, None, 422),
    ("rows over the limit", many_rows_npz, None, 422),
    ("40,000 zip members", many_members_zip, None, 422),
    ("100 MB .npy header", long_npy_header, None, 422),
    ("45 MB CSV header", wide_header_csv, "y", 413),
    ("record of quoted newlines", quoted_newlines_csv, "y", 413),
    ("one long text label", long_label_csv, "y", None),  # accepted: 2 classes
]
BOUND = 16 * MiB  # what parse may allocate for any of them (measured: under 2 MiB)


def peak_of(blob: bytes, target: str | None) -> tuple[int, UploadError | None]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        try:
            parse(blob, target=target)
            err = None
        except UploadError as exc:
            err = exc
        return tracemalloc.get_traced_memory()[1] - base, err
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("case", "make", "target", "status"), CASES, ids=[c[0] for c in CASES])
def test_hostile_uploads_are_refused_within_a_memory_bound(
    case: str, make: Callable[[], bytes], target: str | None, status: int | None
) -> None:
    blob = make()
    assert len(blob) < 50 * MiB  # each fits under the default DEEPZOO_MAX_UPLOAD_MB
    peak, err = peak_of(blob, target)
    if status is None:
        assert err is None, err
    else:
        assert err is not None and err.status == status and err.field == "file", err
    print(f"{case}: {len(blob):,} bytes, peak {peak / MiB:.2f} MiB")
    assert peak < BOUND, f"{case}: parse allocated {peak / MiB:.0f} MiB"
