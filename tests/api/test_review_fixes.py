"""Small 500s and leaks from the outside review, on SQLite and PostgreSQL: out-of-range
query values, naive cursors, made-up owners, coerced numbers, the active-jobs cap under
concurrency, the SQLite file's mode."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.jobs import SPEC


def _paths(r: Any) -> list[str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [e["path"] for e in r.json()["errors"]]


def test_since_step_beyond_int64_is_422(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=SPEC).json()
    url = f"/v1/jobs/{job['id']}/metrics"
    assert _paths(client.get(url, params={"since_step": 2**63})) == ["since_step"]
    assert _paths(client.get(url, params={"since_step": 10**30})) == ["since_step"]
    ok = client.get(url, params={"since_step": 2**63 - 1})
    assert ok.status_code == 200 and ok.json()["metrics"] == []


@pytest.mark.parametrize(
    "created",
    ["2026-01-01T00:00:00", "0001-01-01T00:00:00+05:00", 5, None],
    ids=["naive", "overflows-utc", "number", "null"],
)
def test_bad_cursor_is_422(client: TestClient, created: Any) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps([created, "job_x"]).encode()).decode()
    assert _paths(client.get("/v1/jobs", params={"cursor": cursor})) == ["cursor"]


def test_cursor_with_an_offset_still_pages(client: TestClient) -> None:
    """A cursor in another offset than UTC names the same instant."""
    for _ in range(3):
        client.post("/v1/jobs", json=SPEC)
    first = client.get("/v1/jobs", params={"limit": 1}).json()
    created, job_id = json.loads(
        base64.urlsafe_b64decode(first["next_cursor"] + "=" * (-len(first["next_cursor"]) % 4))
    )
    from datetime import datetime, timedelta, timezone

    shifted = datetime.fromisoformat(created).astimezone(timezone(timedelta(hours=5)))
    cursor = base64.urlsafe_b64encode(json.dumps([shifted.isoformat(), job_id]).encode())
    again = client.get("/v1/jobs", params={"limit": 1, "cursor": cursor.decode()})
    direct = client.get("/v1/jobs", params={"limit": 1, "cursor": first["next_cursor"]})
    assert again.status_code == 200 and again.json()["items"] == direct.json()["items"]


def test_key_for_made_up_owner_is_422(client: TestClient, other_client: TestClient) -> None:
    r = client.post("/v1/keys", json={"name": "x", "owner": "nobody-has-this"})
    assert _paths(r) == ["owner"]
    someone = client.get("/v1/keys").json()[-1]["owner"]  # other_client's owner
    assert client.post("/v1/keys", json={"name": "y", "owner": someone}).status_code == 201
    assert client.post("/v1/keys", json={"name": "z", "owner": "admin"}).status_code == 201
    assert client.post("/v1/keys", json={"name": "new owner"}).status_code == 201
    assert _paths(client.post("/v1/keys", json={"name": "w", "admin": "true"})) == ["admin"]


@pytest.mark.parametrize("bad", ["64", True, 64.0], ids=repr)
@pytest.mark.parametrize(
    ("model", "dataset", "field"),
    [
        ("mlp", "moons", "hidden"),
        ("mc_dropout", "sine_gap", "hidden"),
        ("ensemble", "moons", "hidden"),
        ("vae", "moons", "hidden"),
        ("flow", "moons", "hidden"),
        ("gan", "rings8", "hidden_g"),
    ],
)
def test_coerced_widths_are_422(
    client: TestClient, model: str, dataset: str, field: str, bad: Any
) -> None:
    spec = {"model": model, "dataset": dataset, "params": {field: [bad]}}
    paths = _paths(client.post("/v1/jobs", json=spec))
    assert len(paths) == 1 and paths[0].startswith(f"params.{field}"), paths


@pytest.mark.parametrize(
    ("section", "field", "bad"),
    [
        ("train", "epochs", "10"),
        ("train", "batch_size", True),
        ("train", "max_minutes", "5"),
        ("optimizer", "lr", "0.1"),
        ("optimizer", "momentum", False),
        ("params", "dropout", "0.1"),
        ("params", "batchnorm", "yes"),
    ],
)
def test_coerced_numbers_are_422(client: TestClient, section: str, field: str, bad: Any) -> None:
    spec: dict[str, Any] = {**SPEC, section: {**SPEC.get(section, {}), field: bad}}
    assert _paths(client.post("/v1/jobs", json=spec)) == [f"{section}.{field}"]


def test_ints_still_fill_float_fields(client: TestClient) -> None:
    spec = {
        **SPEC,
        "params": {"hidden": [8], "dropout": 0},
        "optimizer": {"name": "sgd", "lr": 1, "momentum": 0},
        "train": {"epochs": 2, "max_minutes": 5},
    }
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["optimizer"]["lr"] == 1.0
    clone = client.post(f"/v1/jobs/{r.json()['id']}/clone", json={"train": {"epochs": 3}})
    assert clone.status_code == 201, clone.text  # stored specs validate again (Python mode)


def test_active_jobs_cap_holds_under_concurrency(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """24 POSTs at once against a cap of 4: exactly 4 are admitted, the rest get 429."""
    from app.config import get_settings

    monkeypatch.setenv("DEEPZOO_MAX_ACTIVE_JOBS", "4")
    get_settings.cache_clear()
    start = threading.Barrier(24)
    codes: list[int] = []

    def post() -> None:
        start.wait()
        codes.append(client.post("/v1/jobs", json=SPEC).status_code)

    threads = [threading.Thread(target=post) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201] * 4 + [429] * 20, codes
    queued = client.get("/v1/jobs", params={"status": "queued"}).json()["items"]
    assert len(queued) == 4


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    """The SQLite file (key digests, uploads, checkpoints) and its -wal/-shm are 0600."""
    from sqlalchemy import text

    from app.db.session import make_engine

    path = tmp_path / "data" / "deepzoo.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        for f in files:
            assert f.exists() and stat.S_IMODE(f.stat().st_mode) == 0o600, f
    engine.dispose()

    old = tmp_path / "old.db"  # made 0644 by an older version
    old.touch()
    os.chmod(old, 0o644)
    make_engine(f"sqlite:///{old}").dispose()
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
