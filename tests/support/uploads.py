"""Upload payloads shared by the parser's tests and the API's: hypothesis strategies for
CSV-ish text and NPZ variants, and small hostile files that used to expand before their
refusal (the figures in docs/security.md)."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
from hypothesis import strategies as st

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
