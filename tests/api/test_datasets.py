"""Dataset uploads over HTTP, in process, on SQLite and PostgreSQL: CSV and NPZ, list, get,
delete, owner isolation, every refusal's status and field, size limits, zip bombs and
pickles, jobs on uploads."""

from __future__ import annotations

import io
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.uploads import bool_y_npz, csv_text, npz_variant, wide_header_csv

ADMIN = {"Authorization": "Bearer dz_test_admin_key_0123456789"}


def houses_csv(n: int = 40) -> bytes:
    rng = np.random.default_rng(0)
    lines = ["rooms,area,age,price"]
    for _ in range(n):
        rooms, area, age = rng.integers(1, 6), rng.uniform(30, 200), rng.integers(0, 80)
        lines.append(f"{rooms},{area:.1f},{age},{1000 * area - 500 * age:.2f}")
    return ("\n".join(lines) + "\n").encode()


def npz(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def upload(
    client: TestClient, blob: bytes, name: str = "houses", filename: str = "data.csv", **form: Any
) -> Any:
    data = {"name": name, **form}
    return client.post("/v1/datasets", files={"file": (filename, blob)}, data=data)


def test_csv_upload_get_list(client: TestClient) -> None:
    r = upload(client, houses_csv(), target="price")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert r.headers["location"] == f"/v1/datasets/{ds['id']}"
    assert ds["id"].startswith("ds_") and ds["name"] == "houses"
    assert ds["kind"] == "table" and ds["task"] == "regression"
    assert ds["shape"] == [40, 3] and ds["n_rows"] == 40 and ds["n_features"] == 3
    assert ds["target"] == "price" and ds["features"] == ["rooms", "area", "age"]
    assert ds["splits"] == {"train": 28, "val": 4, "test": 8}
    assert len(ds["sha256"]) == 64 and ds["size_bytes"] == len(houses_csv())
    assert ds["classes"] is None and ds["created_at"]
    assert client.get(f"/v1/datasets/{ds['id']}").json() == ds
    listed = client.get("/v1/datasets").json()
    kinds = {d["id"]: d["kind"] for d in listed}
    assert kinds["sine_gap"] == "builtin" and kinds[ds["id"]] == "table"


def test_npz_upload_classification_inferred(client: TestClient) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 2, 2))
    y = (x.sum(axis=(1, 2)) > 0).astype(np.int64) * 7  # labels 0 and 7
    r = upload(client, npz(x=x, y=y), name="blobs", filename="d.npz")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["kind"] == "arrays" and ds["task"] == "classification"
    assert ds["shape"] == [30, 2, 2] and ds["classes"] == ["0", "7"] and ds["target"] is None
    forced = upload(client, npz(x=x, y=y), name="as numbers", task="regression").json()
    assert forced["task"] == "regression" and forced["classes"] is None


def test_csv_text_labels_and_task_override(client: TestClient) -> None:
    rows = ["a,b,kind"] + [f"{i},{i % 3},{'cat' if i % 2 else 'dog'}" for i in range(20)]
    r = upload(client, "\n".join(rows).encode(), target="kind")
    assert r.status_code == 201, r.text
    assert r.json()["task"] == "classification" and r.json()["classes"] == ["cat", "dog"]
    # integer target, few values: classification unless told otherwise
    ints = "\n".join(["a,b"] + [f"{i},{i % 3}" for i in range(20)]).encode()
    r = upload(client, ints, target="b")
    assert r.json()["task"] == "classification" and r.json()["classes"] == ["0", "1", "2"]
    r = upload(client, ints, target="b", task="regression")
    assert r.json()["task"] == "regression"
    r = upload(client, ints, target="a")  # 20 distinct integers in 20 rows: a quantity
    assert r.json()["task"] == "regression"


def test_jobs_train_on_uploads(client: TestClient) -> None:
    ds = upload(client, houses_csv(), target="price").json()
    for model in ("mlp", "mc_dropout"):
        spec = {"model": model, "dataset": ds["id"], "params": {"hidden": [8]}}
        r = client.post("/v1/jobs", json=spec)
        assert r.status_code == 201, r.text
        assert r.json()["dataset"] == ds["id"]
    listed = client.get("/v1/jobs", params={"dataset": ds["id"]}).json()["items"]
    assert len(listed) == 2
    big = {"model": "mlp", "dataset": ds["id"], "params": {"hidden": [4096] * 8}}
    r = client.post("/v1/jobs", json=big)  # the size check uses the upload's shape
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "params"
    unknown = client.post("/v1/jobs", json={"model": "mlp", "dataset": "ds_0123456789abcdef"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["path"] == "dataset"
    bad = client.post("/v1/jobs", json={"model": "mlp", "dataset": "ds_nothex"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "dataset"


def test_delete(client: TestClient) -> None:
    ds = upload(client, houses_csv(), target="price").json()
    job = client.post("/v1/jobs", json={"model": "mlp", "dataset": ds["id"]}).json()
    r = client.delete(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 409 and job["id"] in r.json()["detail"]  # a queued job uses it
    client.post(f"/v1/jobs/{job['id']}/cancel")
    assert client.delete(f"/v1/datasets/{ds['id']}").status_code == 204
    assert client.get(f"/v1/datasets/{ds['id']}").status_code == 404
    assert client.delete(f"/v1/datasets/{ds['id']}").status_code == 404
    assert client.delete("/v1/datasets/moons").status_code == 409  # built in
    assert client.delete("/v1/datasets/nope").status_code == 404
    again = client.post("/v1/jobs", json={"model": "mlp", "dataset": ds["id"]})
    assert again.status_code == 422


def test_owner_isolation(client: TestClient, other_client: TestClient) -> None:
    ds = upload(client, houses_csv(), target="price").json()
    path = f"/v1/datasets/{ds['id']}"
    assert other_client.get(path).status_code == 404
    assert other_client.delete(path).status_code == 404
    assert ds["id"] not in {d["id"] for d in other_client.get("/v1/datasets").json()}
    r = other_client.post("/v1/jobs", json={"model": "mlp", "dataset": ds["id"]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "dataset"
    theirs = upload(other_client, houses_csv(), target="price").json()
    mine = client.post("/v1/jobs", json={"model": "mlp", "dataset": ds["id"]}).json()
    clone = client.post(f"/v1/jobs/{mine['id']}/clone", json={"dataset": theirs["id"]})
    assert clone.status_code == 422 and clone.json()["errors"][0]["path"] == "dataset"
    assert client.get(path).status_code == 200  # still there for its owner
    assert theirs["sha256"] == ds["sha256"] and theirs["id"] != ds["id"]


GOOD_ROWS = [f"{i},{i * 2},{i * 0.5}" for i in range(12)]


def csv_bytes(header: str = "a,b,y", rows: list[str] = GOOD_ROWS) -> bytes:
    return "\n".join([header, *rows]).encode()


X, Y = np.zeros((12, 3)), np.arange(12.0)
HUGE_FIELD = csv_bytes(rows=[*GOOD_ROWS, "1" * 5000 + ",1,2"])
WIDE = csv_bytes(header=",".join(f"c{i}" for i in range(4098)), rows=[])
TEXT_TARGET = csv_bytes(rows=[*GOOD_ROWS, "1,2,cat"])
ONE_CLASS = csv_bytes(header="y,a,b", rows=[f"1,{i},{i}" for i in range(12)])
STRUCTURED = np.zeros(12, dtype=[("a", "f4"), ("b", "i4")])
REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("no target for a CSV", {"blob": csv_bytes()}, "target"),
    ("target not a column", {"blob": csv_bytes(), "target": "price"}, "target"),
    ("blank name", {"blob": csv_bytes(), "target": "y", "name": "   "}, "name"),
    ("control chars in name", {"blob": csv_bytes(), "target": "y", "name": "a\x1bb"}, "name"),
    ("bad task", {"blob": csv_bytes(), "target": "y", "task": "clustering"}, "task"),
    ("classify floats", {"blob": csv_bytes(), "target": "y", "task": "classification"}, "task"),
    ("empty file", {"blob": b"", "target": "y"}, "file"),
    ("not UTF-8", {"blob": b"\xff\xfe\x00garbage", "target": "y"}, "file"),
    ("blank header", {"blob": csv_bytes(header=" , ,"), "target": "y"}, "file"),
    ("duplicate column", {"blob": csv_bytes(header="a,a,y"), "target": "y"}, "file"),
    ("only the target", {"blob": b"y\n" + b"\n".join([b"1"] * 12), "target": "y"}, "file"),
    ("text feature", {"blob": csv_bytes(rows=[*GOOD_ROWS, "x,1,2"]), "target": "y"}, "file"),
    ("ragged row", {"blob": csv_bytes(rows=[*GOOD_ROWS, "1,2"]), "target": "y"}, "file"),
    ("nan feature", {"blob": csv_bytes(rows=[*GOOD_ROWS, "nan,1,2"]), "target": "y"}, "file"),
    ("float32 overflow", {"blob": csv_bytes(rows=[*GOOD_ROWS, "1e39,1,2"]), "target": "y"}, "file"),
    ("empty target cell", {"blob": csv_bytes(rows=[*GOOD_ROWS, "1,2,"]), "target": "y"}, "file"),
    ("too few rows", {"blob": csv_bytes(rows=GOOD_ROWS[:5]), "target": "y"}, "file"),
    ("huge field", {"blob": HUGE_FIELD, "target": "y"}, "file"),
    ("too many columns", {"blob": WIDE, "target": "c0"}, "file"),
    ("text regression", {"blob": TEXT_TARGET, "target": "y", "task": "regression"}, "target"),
    ("one class", {"blob": ONE_CLASS, "target": "y", "task": "classification"}, "target"),
    ("npz with a target", {"blob": npz(x=X, y=Y), "target": "y"}, "target"),
    ("npz without y", {"blob": npz(x=X)}, "file"),
    ("npz extra array", {"blob": npz(x=X, y=Y, z=Y)}, "file"),
    ("npz rows differ", {"blob": npz(x=X, y=Y[:11])}, "file"),
    ("npz string array", {"blob": npz(x=X.astype(str), y=Y)}, "file"),
    ("npz complex", {"blob": npz(x=X.astype(complex), y=Y)}, "file"),
    ("npz structured", {"blob": npz(x=STRUCTURED, y=Y)}, "file"),
    ("npz inf", {"blob": npz(x=np.full((12, 3), np.inf), y=Y)}, "file"),
    ("npz 5-D", {"blob": npz(x=np.zeros((12, 1, 1, 1, 1)), y=Y)}, "file"),
    ("npz 3-D y", {"blob": npz(x=X, y=np.zeros((12, 1, 1)))}, "file"),
    ("a bare .npy", {"blob": b"\x93NUMPY\x01\x00" + b" " * 20}, "file"),
    ("a truncated zip", {"blob": npz(x=X, y=Y)[:200]}, "file"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "form", "path"), REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusals_name_the_field(
    client: TestClient, case: str, form: dict[str, Any], path: str
) -> None:
    form = dict(form)
    r = upload(client, form.pop("blob"), **form)
    assert r.status_code == 422, (case, r.status_code, r.text)
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["path"] for e in body["errors"]] == [path], body
    assert not [d for d in client.get("/v1/datasets").json() if d["kind"] != "builtin"]


def test_missing_fields_are_422(client: TestClient) -> None:
    r = client.post("/v1/datasets", data={"name": "x", "target": "y"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "file"
    r = client.post("/v1/datasets", files={"file": ("d.csv", csv_bytes())}, data={"target": "y"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "name"
    r = client.post("/v1/datasets", json={"name": "x"})
    assert r.status_code == 422


def test_pickle_in_npz_is_never_loaded(client: TestClient, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.mkdir, (str(marker),))

    x = np.empty(12, dtype=object)
    x[:] = [Payload() for _ in range(12)]
    r = upload(client, npz(x=x, y=Y), filename="evil.npz")
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "file"
    assert "refused" in r.json()["detail"]
    assert not marker.exists()


def zip_bomb(inflated: int) -> bytes:
    """An .npz whose x inflates to ``inflated`` bytes of zeros (a header claiming them)."""
    header = io.BytesIO()
    n = inflated // 8
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (n, 1)}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(n * 8 // len(chunk)):
                f.write(chunk)
        zf.writestr("y.npy", npz_member(np.zeros(10)))
    return buf.getvalue()


def npz_member(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_zip_bomb_is_refused_without_inflating(client: TestClient) -> None:
    bomb = zip_bomb(300 * 1024 * 1024)
    assert len(bomb) < 400 * 1024  # 300 MiB of zeros in about 300 KiB
    t0 = time.monotonic()
    r = upload(client, bomb, filename="bomb.npz")
    assert r.status_code == 413, r.text
    assert r.json()["errors"][0]["path"] == "file" and "inflate" in r.json()["detail"]
    assert time.monotonic() - t0 < 5


def test_npy_header_claiming_more_than_stored_is_refused(client: TestClient) -> None:
    """A header whose shape is larger than the member's data: refused before numpy
    allocates the array it declares."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 1)}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + bytes(96))
        zf.writestr("y.npy", npz_member(Y))
    r = upload(client, buf.getvalue(), filename="liar.npz")
    assert r.status_code == 422 and "exceeds" in r.json()["detail"]


@pytest.fixture
def small_limits(api_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """Uploads up to 2 MiB, other bodies up to 1 MiB."""
    from app.config import get_settings
    from app.main import create_app

    monkeypatch.setenv("DEEPZOO_MAX_UPLOAD_MB", "2")
    monkeypatch.setenv("DEEPZOO_MAX_BODY_MB", "1")
    get_settings.cache_clear()
    with TestClient(create_app(), raise_server_exceptions=False, headers=ADMIN) as c:
        yield c
    get_settings.cache_clear()


def test_upload_size_limits(small_limits: TestClient) -> None:
    client = small_limits
    rows = [f"{i},{i % 7},{i * 0.25}" for i in range(90_000)]
    big_ok = csv_bytes(rows=rows)
    assert 1.2 * 2**20 < len(big_ok) < 2 * 2**20  # over the body limit, under the upload limit
    r = upload(client, big_ok, target="y")
    assert r.status_code == 201, r.text
    assert r.json()["n_rows"] == 90_000
    # the file over the upload limit, the body within limit + envelope: the handler refuses
    r = upload(client, b"a,y\n" + b"1,2\n" * (2**19 + 1), target="y")
    assert r.status_code == 413 and r.json()["errors"][0]["path"] == "file", r.text
    # a body announced over the limit: refused before it is read
    r = upload(client, bytes(3 * 2**20), target="y")
    assert r.status_code == 413
    # streamed without Content-Length: refused once the bytes pass the limit
    boundary = "x0x0x0"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nbig\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(40):
            yield b"1,2\n" * 2**14  # 64 KiB each, 2.5 MiB in all

    r = client.post(
        "/v1/datasets",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413, r.text
    # other routes keep the general body limit
    r = client.post("/v1/jobs", json={"model": "mlp", "dataset": "moons", "name": "x" * 2**20})
    assert r.status_code == 413


BLOBS = st.one_of(
    st.binary(max_size=200).map(lambda b: (b, None)),
    csv_text(),
    npz_variant().map(lambda b: (b, None)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=BLOBS, task=st.sampled_from([None, "regression", "classification", "other"]))
def test_any_upload_is_stored_or_refused_with_a_field(
    client: TestClient, case: tuple[bytes, str | None], task: str | None
) -> None:
    blob, target = case
    form = {k: v for k, v in {"target": target, "task": task}.items() if v is not None}
    r = upload(client, blob, **form)
    if r.status_code == 201:
        assert r.json()["n_rows"] >= 10
        assert client.delete(f"/v1/datasets/{r.json()['id']}").status_code == 204
        return
    assert r.status_code in (413, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["path"] in {"file", "target", "task", "name"}


def test_uploads_are_refused_before_they_are_expanded(client: TestClient) -> None:
    """The review's two cases over HTTP: refused from the .npy headers and from the first
    MiB of the CSV header line, in well under a second each (they took 5 s and 2 s, and
    +2.3 GB and +0.6 GB, before)."""
    for blob, form, status in ((bool_y_npz(), {}, 422), (wide_header_csv(), {"target": "y"}, 413)):
        t0 = time.monotonic()
        r = upload(client, blob, **form)
        assert r.status_code == status, r.text
        assert r.json()["errors"][0]["path"] == "file", r.json()
        assert time.monotonic() - t0 < 2
