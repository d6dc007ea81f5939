"""What one hostile upload makes ``parse`` allocate: bounded by the limits, not by how far
the file inflates. Each case is a small file that used to expand before its refusal (the
figures in docs/security.md); the peak is measured with ``tracemalloc``, which sees
numpy's array buffers as well as Python objects."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from collections.abc import Callable

import numpy as np
import pytest

from models.data.upload import UploadError, parse

MiB = 1024 * 1024


def _member(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: str) -> None:
    """An .npy member of zeros, deflated as it is written (the test never holds it whole)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    )
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    left = int(np.prod(shape)) * np.dtype(dtype).itemsize
    chunk = bytes(MiB)
    with zf.open(info, "w", force_zip64=True) as f:
        f.write(header.getvalue())
        while left > 0:
            f.write(chunk[: min(left, MiB)])
            left -= MiB


def bool_y_npz() -> bytes:
    """The review's case: 126 KB whose y is bool (1M, 128): 128 MB as stored, 1 GB as
    float64, and np.unique sorted it before the target count was checked (+2.3 GB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        _member(zf, "x.npy", (1_000_000, 1), "<f4")
        _member(zf, "y.npy", (1_000_000, 128), "|b1")
    return buf.getvalue()


def many_rows_npz() -> bytes:
    """x and y disagree on rows, and both declare more than allowed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        _member(zf, "x.npy", (2_000_000, 1), "|u1")
        _member(zf, "y.npy", (1_500_000,), "|u1")
    return buf.getvalue()


def many_members_zip() -> bytes:
    """40,000 empty members: zipfile builds an object for each before names are checked."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(40_000):
            zf.writestr(str(i), b"")
    return buf.getvalue()


def long_npy_header() -> bytes:
    """A version-2 .npy header declaring 100 MB of header text (numpy reads it all, then
    refuses it for being over 10,000 bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ("x.npy", "y.npy"):
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                f.write(b"\x93NUMPY\x02\x00" + (100 * MiB).to_bytes(4, "little"))
                for _ in range(100):
                    f.write(b" " * MiB)
    return buf.getvalue()


def wide_header_csv() -> bytes:
    """The review's other case: a 45 MB header line (5 million column names)."""
    return (",".join(f"c{i}" for i in range(5_000_000)) + ",y\n1,2\n").encode()


def quoted_newlines_csv() -> bytes:
    """One record of 2.5 million quoted one-newline fields: every physical line is short."""
    return ("a,y\n" + '"\n",' * 2_500_000 + "1\n").encode()


def long_label_csv() -> bytes:
    """20,000 one-letter labels and one of 4,000 characters: as a numpy string array every
    label took 16 KB (320 MB here; 16 GB at the million-row limit)."""
    return ("a,y\n" + "1,a\n" * 20_000 + "1," + "b" * 4_000 + "\n").encode()


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
