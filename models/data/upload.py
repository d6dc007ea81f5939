"""Users' own data: parse and validate an upload, and load the stored form back.

An upload is a CSV table (a header row, numeric features, one target column) or an
``.npz`` archive with arrays ``x`` and ``y``. ``parse`` checks it within fixed bounds
and returns ``Parsed``: float32 arrays plus what was inferred (task, classes). Its
``canonical()`` bytes, an ``.npz`` of float32 ``x`` and ``y`` (no pickle), are what a
service stores; ``load_upload`` turns them back into a tensor table with a fixed split.

Hostile input is expected: nothing is unpickled; an ``.npz`` is refused on what its zip
end record, zip directory and ``.npy`` headers declare (member count, sizes, dtypes,
shapes, rows, columns, cells) before a byte of array data is inflated; a CSV is decoded
and read one record at a time with a cap on a record's characters (so a 45 MB header
line is refused after reading 1 MiB of it), a field size limit and row, column and
cell caps; no path is ever built from anything in the upload. What one upload can make
this process allocate is therefore bounded by the limits, not by how far the file
inflates (``tests/models/test_upload_memory.py`` measures it). Every refusal is an
``UploadError`` naming the form field at fault (``file``, ``target``, ``task``).
"""

from __future__ import annotations

import csv
import io
import math
import struct
import threading
import zipfile
import zlib
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Literal

import numpy as np

from models.data.info import DataInfo, Task
from models.data.tables import TensorTable, split

Kind = Literal["table", "arrays"]
UPLOAD_ID = r"^ds_[0-9a-f]{16}$"  # how a job spec names an upload
VAL, TEST = 0.1, 0.2  # the fixed split of every upload: 70 / 10 / 20


@dataclass(frozen=True)
class Limits:
    min_rows: int = 10
    max_rows: int = 1_000_000
    max_features: int = 4096  # per example (CSV columns or prod(x.shape[1:]))
    max_cells: int = 16_000_000  # rows x features: 64 MB as float32
    max_target_dim: int = 64
    max_classes: int = 1000
    max_class_for_inference: int = 20  # integer targets with at most this many values
    max_field_chars: int = 4096  # one CSV cell (csv.field_size_limit)
    max_name_chars: int = 200  # a CSV column name
    max_uncompressed: int = 256 * 1024 * 1024  # all .npz members, as the zip declares
    max_record_chars: int = 1 << 20  # one CSV record (the header included), before parsing
    max_zip_directory: int = 64 * 1024  # the .npz central directory: two short entries
    max_npy_header: int = 10_000  # an .npy header's declared length (numpy's own cap)


LIMITS = Limits()


class UploadError(ValueError):
    """A refused upload: ``field`` is the form field at fault, ``status`` the HTTP code."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


@dataclass(frozen=True)
class Parsed:
    kind: Kind
    task: Task
    x: np.ndarray  # (N, *input_shape) float32
    y: np.ndarray  # (N,) float32 class indices, or (N, target_dim) float32 targets
    features: list[str]
    target: str | None  # the CSV column, None for arrays
    classes: list[str] | None = None  # label of each class index (classification)

    @property
    def n_classes(self) -> int | None:
        return len(self.classes) if self.classes is not None else None

    def canonical(self) -> bytes:
        """The stored form: an ``.npz`` of float32 ``x`` and ``y``, loadable without pickle."""
        buf = io.BytesIO()
        np.savez_compressed(buf, x=self.x, y=self.y)
        return buf.getvalue()


def parse(
    blob: bytes,
    *,
    target: str | None = None,
    task: Task | None = None,
    limits: Limits = LIMITS,
) -> Parsed:
    """Validate an upload; the kind is told by its first bytes, not by a file name."""
    if not blob:
        raise UploadError("file", "the file is empty")
    if blob.startswith(b"\x93NUMPY"):
        raise UploadError("file", "a .npy file holds one array; send np.savez(f, x=..., y=...)")
    if blob.startswith(b"PK"):
        if target is not None:
            raise UploadError("target", "target names a CSV column; an .npz holds x and y")
        x, y = _read_npz(blob, limits)
        return _finish("arrays", x, y, None, None, task, limits)
    if target is None:
        raise UploadError("target", "a CSV upload needs target: the column to predict")
    features, x, labels = _read_csv(blob, target, limits)
    return _finish("table", x, labels, features, target, task, limits)


# --- CSV -------------------------------------------------------------------------------------

_CSV_LOCK = threading.Lock()


@contextmanager
def _field_limit(n: int) -> Iterator[None]:
    # csv.field_size_limit is process-wide; set it for the parse and put it back
    with _CSV_LOCK:
        old = csv.field_size_limit(n)
        try:
            yield
        finally:
            csv.field_size_limit(old)


class _Records:
    """The upload's text one physical line at a time, decoded as it is read (the file is
    never held twice), refusing a record (the lines the CSV reader asks for between two
    ``reset()`` calls: a quoted field may span lines) over ``cap`` characters before the
    reader splits it into fields, and any NUL byte."""

    def __init__(self, blob: bytes, cap: int) -> None:
        self._f = io.TextIOWrapper(io.BytesIO(blob), encoding="utf-8-sig", newline="")
        self.cap, self.lines, self._record = cap, 0, 0

    def reset(self) -> None:
        self._record = 0

    def __iter__(self) -> _Records:
        return self

    def __next__(self) -> str:
        line = self._f.readline(self.cap - self._record + 1)
        if not line:
            raise StopIteration
        self.lines += 1
        self._record += len(line)
        if self._record > self.cap:
            what = "the header" if self.lines == 1 else f"line {self.lines}"
            raise UploadError(
                "file",
                f"{what}: a record over {self.cap:,} characters, refused before it is parsed",
                413,
            )
        if "\x00" in line:
            raise UploadError("file", f"line {self.lines}: a NUL byte: not a CSV table")
        return line


def _read_csv(blob: bytes, target: str, limits: Limits) -> tuple[list[str], np.ndarray, list[str]]:
    records = _Records(blob, limits.max_record_chars)
    with _field_limit(limits.max_field_chars):
        try:
            return _csv_rows(csv.reader(records), records, target, limits)
        except csv.Error as exc:
            raise UploadError("file", f"malformed CSV: {exc}") from None
        except UnicodeDecodeError:
            raise UploadError(
                "file", f"not UTF-8 text (line {records.lines + 1}) and not an .npz"
            ) from None


def _csv_rows(
    reader: Iterator[list[str]], records: _Records, target: str, limits: Limits
) -> tuple[list[str], np.ndarray, list[str]]:
    header = next(reader, None)
    if not header or all(not h.strip() for h in header):
        raise UploadError("file", "no header row: the first line must name the columns")
    if len(header) - 1 > limits.max_features:
        raise UploadError("file", f"{len(header)} columns; at most {limits.max_features + 1}")
    names = [h.strip() for h in header]
    del header
    if any(not n for n in names):
        raise UploadError("file", f"column {names.index('') + 1} has no name in the header")
    if any(len(n) > limits.max_name_chars for n in names):
        raise UploadError("file", f"a column name is over {limits.max_name_chars} characters")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UploadError("file", f"column {dup!r} appears twice in the header")
    if target not in names:
        raise UploadError("target", f"no column {target!r}; the header has {_some(names)}")
    if len(names) < 2:
        raise UploadError("file", "no feature columns besides the target")
    t = names.index(target)
    features = [n for i, n in enumerate(names) if i != t]
    width = len(features)
    max_rows = min(limits.max_rows, limits.max_cells // width)
    values = array("d")  # row-major features, 8 bytes a cell
    labels: list[str] = []
    records.reset()
    for row in reader:
        records.reset()
        line = reader.line_num  # type: ignore[attr-defined]
        if not row or all(not c.strip() for c in row):
            continue  # blank lines are allowed (a trailing newline, say)
        if len(row) != len(names):
            raise UploadError(
                "file", f"line {line}: {len(row)} fields, the header has {len(names)}"
            )
        if len(labels) >= max_rows:
            raise UploadError(
                "file", f"over {max_rows:,} rows (at most {limits.max_cells:,} cells)", 413
            )
        for i, cell in enumerate(row):
            if i == t:
                label = cell.strip()
                if not label:
                    raise UploadError("file", f"line {line}: the target {target!r} is empty")
                labels.append(label)
            else:
                values.append(_number(cell, line, names[i]))
    x = np.frombuffer(values, dtype=np.float64).reshape(len(labels), width)
    return features, x, labels


def _number(cell: str, line: int, column: str) -> float:
    s = cell.strip()
    try:
        v = float(s)
    except ValueError:
        raise UploadError(
            "file", f"line {line}, column {column!r}: {s[:40]!r} is not a number"
        ) from None
    if not math.isfinite(v):
        raise UploadError("file", f"line {line}, column {column!r}: {s[:40]!r} is not finite")
    return v


def _some(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")


# --- NPZ -------------------------------------------------------------------------------------

# what a damaged archive can raise from zipfile, zlib and numpy's .npy reader
_BROKEN = (ValueError, OSError, EOFError, KeyError, SyntaxError, RuntimeError,
           NotImplementedError, zipfile.BadZipFile, zlib.error)  # fmt: skip
_NUMERIC = "biuf"  # bool, signed, unsigned, float: no object, string, void, complex, time


def _read_npz(blob: bytes, limits: Limits) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` from an ``.npz``. Refused, before a byte of array data is inflated, on
    what the zip end record, the zip directory and the ``.npy`` headers declare: the member
    count, sizes, compression, dtypes and shapes (``_check_shapes``); only then
    ``np.load(allow_pickle=False)``, which allocates what the headers declared."""
    _check_zip_end(blob, limits)
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            members = zf.infolist()
            names = sorted(m.filename for m in members)
            if names != ["x.npy", "y.npy"]:
                raise UploadError(
                    "file", f"an .npz upload holds exactly x and y; this one has {names[:10]}"
                )
            total = sum(m.file_size for m in members)
            if total > limits.max_uncompressed:
                raise UploadError(
                    "file",
                    f"the arrays would inflate to {total:,} bytes; at most "
                    f"{limits.max_uncompressed:,}",
                    413,
                )
            shapes: dict[str, tuple[int, ...]] = {}
            for m in members:
                if m.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise UploadError("file", f"{m.filename}: unsupported zip compression")
                if m.flag_bits & 0x1:
                    raise UploadError("file", f"{m.filename}: encrypted")
                with zf.open(m) as f:
                    key = m.filename[:-4]
                    shapes[key] = _check_npy_header(f, key, m.file_size, limits)
    except UploadError:
        raise
    except _BROKEN as exc:
        raise UploadError("file", f"not a valid .npz (zip): {exc}") from None
    _check_shapes(shapes["x"], shapes["y"], limits)
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            return np.asarray(z["x"]), np.asarray(z["y"])
    except UploadError:
        raise
    except _BROKEN as exc:
        raise UploadError("file", f"unreadable arrays: {exc}") from None


_EOCD = struct.Struct("<4s4H2LH")  # the zip end-of-central-directory record


def _check_zip_end(blob: bytes, limits: Limits) -> None:
    """Two entries and a small central directory, as the zip's end record declares them:
    ``zipfile`` would otherwise build an object per directory entry (a 50 MB archive of
    empty members is a million of them) before the member names can be checked."""
    tail = blob[-(_EOCD.size + 0xFFFF) :]
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return  # not found: zipfile refuses it (BadZipFile) below
    _, _, _, _, entries, cd_size, _, _ = _EOCD.unpack_from(tail, at)
    if entries != 2:
        raise UploadError(
            "file", f"an .npz upload holds exactly x and y; this one has {entries} members"
        )
    if cd_size > limits.max_zip_directory:
        raise UploadError(
            "file", f"a zip directory of {cd_size:,} bytes for 2 members; not an .npz of x and y"
        )


def _check_npy_header(f: IO[bytes], key: str, file_size: int, limits: Limits) -> tuple[int, ...]:
    """The dtype and shape an ``.npy`` member declares, refused before numpy allocates;
    returns the shape."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise UploadError("file", f"{key}: unsupported .npy version {version}")
        # the header's declared length, capped before it is read (version 2 allows 4 GB)
        length = struct.Struct("<H" if version == (1, 0) else "<I")
        raw = f.read(length.size)
        if len(raw) != length.size:
            raise UploadError("file", f"{key}: not a valid .npy array: truncated header")
        (n,) = length.unpack(raw)
        if n > limits.max_npy_header:
            raise UploadError(
                "file", f"{key}: an .npy header of {n:,} bytes; at most {limits.max_npy_header:,}"
            )
        header = io.BytesIO(raw + f.read(n))
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(header)
        else:
            shape, _, dtype = fmt.read_array_header_2_0(header)
    except UploadError:
        raise
    except _BROKEN as exc:
        raise UploadError("file", f"{key}: not a valid .npy array: {exc}") from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in _NUMERIC:
        raise UploadError(
            "file", f"{key}: dtype {dtype.str!r} refused; only bool, integer and float arrays"
        )
    if not 1 <= len(shape) <= 4:
        raise UploadError("file", f"{key}: {len(shape)} dimensions; 1 to 4 allowed")
    if math.prod(shape) * dtype.itemsize > file_size:
        raise UploadError("file", f"{key}: the header's shape {shape} exceeds the data stored")
    return tuple(int(d) for d in shape)


def _check_shapes(x: tuple[int, ...], y: tuple[int, ...], limits: Limits) -> None:
    """Rows, features, cells and targets from the declared shapes, as ``_finish`` and
    ``_target`` check them after loading (the same messages), before anything is loaded."""
    n = x[0]
    if y[0] != n:
        raise UploadError("file", f"x has {n} rows but y has {y[0]}: they must match")
    if n < limits.min_rows:
        raise UploadError("file", f"{n} rows; at least {limits.min_rows} are needed to split")
    if n > limits.max_rows:
        raise UploadError("file", f"{n:,} rows; at most {limits.max_rows:,}", 413)
    width = math.prod(x[1:])
    if width < 1 or width > limits.max_features:
        raise UploadError("file", f"{width} features per example; 1 to {limits.max_features}")
    if n * width > limits.max_cells:
        raise UploadError("file", f"{n * width:,} values; at most {limits.max_cells:,}", 413)
    if len(y) > 2 or (len(y) == 2 and y[1] < 1):
        raise UploadError("file", f"y has shape {y}; (N,) or (N, k) expected")
    if len(y) == 2 and y[1] > limits.max_target_dim:
        raise UploadError("file", f"{y[1]} targets; at most {limits.max_target_dim}")


# --- common ----------------------------------------------------------------------------------


def _finish(
    kind: Kind,
    x: np.ndarray,
    y: np.ndarray | list[str],
    features: list[str] | None,
    target: str | None,
    task: Task | None,
    limits: Limits,
) -> Parsed:
    n = len(x)
    if len(y) != n:
        raise UploadError("file", f"x has {n} rows but y has {len(y)}: they must match")
    if n < limits.min_rows:
        raise UploadError("file", f"{n} rows; at least {limits.min_rows} are needed to split")
    if n > limits.max_rows:
        raise UploadError("file", f"{n:,} rows; at most {limits.max_rows:,}", 413)
    if x.ndim == 1:
        x = x.reshape(n, 1)
    width = math.prod(x.shape[1:])
    if width < 1 or width > limits.max_features:
        raise UploadError("file", f"{width} features per example; 1 to {limits.max_features}")
    if n * width > limits.max_cells:
        raise UploadError("file", f"{n * width:,} values; at most {limits.max_cells:,}", 413)
    x32 = _float32(x, "x" if kind == "arrays" else "a feature")
    task, y32, classes = _target(y, task, target, limits)
    names = features or [f"x{i}" for i in range(width)]
    return Parsed(kind, task, x32, y32, names, target, classes)


def _float32(a: np.ndarray, what: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(out).all():
        raise UploadError("file", f"{what} has NaN, inf or values beyond float32")
    return out


def _target(
    y: np.ndarray | list[str], task: Task | None, column: str | None, limits: Limits
) -> tuple[Task, np.ndarray, list[str] | None]:
    """The task (given or inferred), the float32 targets, and the class labels."""
    field_ = "target" if column is not None else "file"
    if isinstance(y, list):  # CSV cells: numbers, or text labels
        try:
            values = np.array([float(v) for v in y], dtype=np.float64)
        except ValueError:
            if task == "regression":
                raise UploadError("target", f"{column!r} is not numeric: cannot regress") from None
            return "classification", *_text_classes(y, field_, limits)
        if not np.isfinite(values).all():
            raise UploadError(field_, f"{column!r} has NaN or inf")
        y = values
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] < 1):
        raise UploadError("file", f"y has shape {y.shape}; (N,) or (N, k) expected")
    if y.ndim == 2:  # several targets: regression, converted once, straight to float32
        if task == "classification":
            raise UploadError("task", "classification needs one column of integer (or text) labels")
        if y.shape[1] > limits.max_target_dim:
            raise UploadError("file", f"{y.shape[1]} targets; at most {limits.max_target_dim}")
        return "regression", _float32(y, "the target"), None
    is_bool = y.dtype.kind == "b"
    yf = y.astype(np.float64)  # (N,): at most max_rows values
    if not np.isfinite(yf).all():
        raise UploadError(field_, "the target has NaN or inf")
    integral = bool(is_bool or np.all(yf == np.round(yf)))
    if task is None:
        few = len(np.unique(yf)) <= min(limits.max_class_for_inference, len(yf) // 2)
        task = "classification" if integral and few else "regression"
    if task == "classification":
        if not integral:
            raise UploadError("task", "classification needs one column of integer (or text) labels")
        labels = yf.astype(np.int64)
        return "classification", *_classes(labels, field_, limits)
    return "regression", _float32(yf.reshape(len(yf), 1), "the target"), None


def _classes(labels: np.ndarray, field_: str, limits: Limits) -> tuple[np.ndarray, list[str]]:
    uniq, index = np.unique(labels, return_inverse=True)
    if len(uniq) < 2:
        raise UploadError(field_, "classification needs at least 2 classes; there is 1")
    if len(uniq) > limits.max_classes:
        raise UploadError(field_, f"{len(uniq)} classes; at most {limits.max_classes}")
    return index.astype(np.float32), [str(u) for u in uniq.tolist()]


def _text_classes(labels: list[str], field_: str, limits: Limits) -> tuple[np.ndarray, list[str]]:
    """Text labels, sorted by code point as ``np.unique`` sorts them, without building a
    fixed-width string array (one 4,096-character label among a million short ones would
    make that 16 GB)."""
    uniq = sorted(set(labels))
    if len(uniq) < 2:
        raise UploadError(field_, "classification needs at least 2 classes; there is 1")
    if len(uniq) > limits.max_classes:
        raise UploadError(field_, f"{len(uniq)} classes; at most {limits.max_classes}")
    code = {u: i for i, u in enumerate(uniq)}
    return np.fromiter((code[v] for v in labels), np.float32, len(labels)), uniq


def load_upload(
    blob: bytes, *, name: str, task: Task, n_classes: int | None, seed: int
) -> TensorTable:
    """A stored upload (``Parsed.canonical()``) as a tensor table: one fixed 70/10/20 split
    for a given ``seed``, so every job on it compares."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        x, y = z["x"], z["y"]
    return split(name, x, y, task, seed=seed, val=VAL, test=TEST, n_classes=n_classes)


def upload_info(
    name: str,
    task: Task,
    n_rows: int,
    input_shape: tuple[int, ...],
    target_dim: int,
    n_classes: int | None,
) -> DataInfo:
    """The ``DataInfo`` that ``load_upload`` gives, without reading the arrays."""
    return DataInfo(
        name=name,
        task=task,
        input_shape=tuple(input_shape),
        target_dim=1 if task == "classification" else target_dim,
        n_classes=n_classes,
        n_train=split_sizes(n_rows)[0],
    )


def split_sizes(n_rows: int) -> tuple[int, int, int]:
    """Rows in train, val, test (as ``models.data.split`` cuts them)."""
    n_test, n_val = round(TEST * n_rows), round(VAL * n_rows)
    return n_rows - n_test - n_val, n_val, n_test
