"""Data migrations, on SQLite and PostgreSQL: rows written under an older revision."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import text

from tests.support.services import reset_caches

JOBS = sa.table(
    "jobs",
    *(sa.column(c) for c in ("id", "owner", "model", "dataset", "status", "queue")),
    sa.column("spec", sa.JSON),
    *(sa.column(c, sa.JSON) for c in ("tags", "metrics", "provenance")),
    *(sa.column(c) for c in ("progress_step", "progress_total", "attempts")),
    sa.column("cancel_requested", sa.Boolean),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _job(job_id: str, model: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": job_id,
        "owner": "admin",
        "model": model,
        "dataset": "moons",
        "status": "succeeded",
        "queue": "cpu",
        "spec": {"model": model, "dataset": "moons", "params": params},
        "tags": [],
        "metrics": {},
        "provenance": {},
        "progress_step": 0,
        "progress_total": 0,
        "attempts": 1,
        "cancel_requested": False,
        "created_at": datetime.now(UTC),
    }


def test_0003_old_flow_jobs_keep_their_architecture(database_url: str, monkeypatch: Any) -> None:
    """Flow jobs stored before ``batchnorm`` existed get ``batchnorm: false`` (the model
    their checkpoints hold); a flow that names it and other families are left alone; the
    downgrade takes the key out again."""
    monkeypatch.setenv("DEEPZOO_DATABASE_URL", database_url)
    reset_caches()
    from app.db import migrate
    from app.db.session import get_engine
    from models.registry import get_family

    if database_url.startswith("postgresql"):
        with get_engine().begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate.upgrade(revision="0002")
    old = {"transform": "realnvp", "layers": 2}
    with get_engine().begin() as conn:
        conn.execute(
            sa.insert(JOBS),
            [
                _job("job_old", "flow", old),
                _job("job_named", "flow", {**old, "batchnorm": True}),
                _job("job_vae", "vae", {"latent_dim": 2}),
            ],
        )

    def params() -> dict[str, dict[str, Any]]:
        with get_engine().connect() as conn:
            rows = conn.execute(sa.select(JOBS.c.id, JOBS.c.spec)).all()
        return {job_id: spec["params"] for job_id, spec in rows}

    migrate.upgrade()
    after = params()
    assert after["job_old"] == {**old, "batchnorm": False}
    assert after["job_named"] == {**old, "batchnorm": True}
    assert after["job_vae"] == {"latent_dim": 2}
    assert not get_family("flow").params(**after["job_old"]).uses_batchnorm()

    migrate.downgrade("0002")
    assert params() == {"job_old": old, "job_named": old, "job_vae": {"latent_dim": 2}}
    reset_caches()


EVENTS = sa.table(
    "job_events",
    sa.column("id"),
    sa.column("job_id"),
    sa.column("kind"),
    sa.column("data", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def test_0004_events_numbered_per_job(database_url: str, monkeypatch: Any) -> None:
    """Events stored with global ids get per-job seqs 1..n in id order, and each job's
    ``event_seq`` the last of them, so the next event continues the count; the downgrade
    drops both columns."""
    monkeypatch.setenv("DEEPZOO_DATABASE_URL", database_url)
    reset_caches()
    from app.db import migrate
    from app.db.ops import add_event
    from app.db.session import get_engine, session_scope

    if database_url.startswith("postgresql"):
        with get_engine().begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate.upgrade(revision="0003")
    now = datetime.now(UTC)
    with get_engine().begin() as conn:
        conn.execute(sa.insert(JOBS), [_job(j, "mlp", {}) for j in ("job_a", "job_b", "job_quiet")])
        # interleaved, as owners' jobs run side by side
        for n, job_id in enumerate(["job_a", "job_b", "job_a", "job_a", "job_b"]):
            conn.execute(
                sa.insert(EVENTS).values(
                    job_id=job_id, kind="progress", data={"n": n}, created_at=now
                )
            )

    migrate.upgrade()
    with get_engine().connect() as conn:
        rows = conn.execute(
            text("SELECT job_id, seq, data FROM job_events ORDER BY job_id, seq")
        ).all()
        seqs = dict(conn.execute(text("SELECT id, event_seq FROM jobs")).all())
    assert [(j, s, (d if isinstance(d, dict) else json.loads(d))["n"]) for j, s, d in rows] == [
        ("job_a", 1, 0),
        ("job_a", 2, 2),
        ("job_a", 3, 3),
        ("job_b", 1, 1),
        ("job_b", 2, 4),
    ]
    assert seqs == {"job_a": 3, "job_b": 2, "job_quiet": 0}
    with session_scope() as s:
        add_event(s, "job_b", "status", {"status": "running"})
        add_event(s, "job_quiet", "status", {"status": "running"})
    with get_engine().connect() as conn:
        new = conn.execute(
            text("SELECT job_id, seq FROM job_events WHERE kind = 'status' ORDER BY job_id")
        ).all()
    assert [tuple(r) for r in new] == [("job_b", 3), ("job_quiet", 1)]

    migrate.downgrade("0003")
    columns = {c["name"] for c in sa.inspect(get_engine()).get_columns("job_events")}
    assert "seq" not in columns
    assert "event_seq" not in {c["name"] for c in sa.inspect(get_engine()).get_columns("jobs")}
    reset_caches()


def test_0005_sweeps_up_down_up(database_url: str, monkeypatch: Any) -> None:
    """The sweeps tables come and go with their revision; a trial refers to its sweep
    (deleting the sweep deletes its trials) but not to its job."""
    monkeypatch.setenv("DEEPZOO_DATABASE_URL", database_url)
    reset_caches()
    from app.db import migrate
    from app.db.session import get_engine

    if database_url.startswith("postgresql"):
        with get_engine().begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate.upgrade()
    now = datetime.now(UTC)
    with get_engine().begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sweeps (id, owner, spec, grid, method, trials, parallel, metric,"
                " goal, seed, status, created_at) VALUES ('swp_a', 'admin', '{}', '{}', 'grid',"
                " 1, 1, 'val_loss', 'min', 0, 'running', :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                'INSERT INTO sweep_trials (sweep_id, number, "values", job_id, created_at)'
                " VALUES ('swp_a', 0, '{}', 'job_gone', :now)"
            ),
            {"now": now},
        )
        conn.execute(text("DELETE FROM sweeps WHERE id = 'swp_a'"))
        assert conn.execute(text("SELECT count(*) FROM sweep_trials")).scalar() == 0
    migrate.downgrade("0004")
    assert not {"sweeps", "sweep_trials"} & set(sa.inspect(get_engine()).get_table_names())
    migrate.upgrade()
    assert {"sweeps", "sweep_trials"} <= set(sa.inspect(get_engine()).get_table_names())


def test_0006_sweep_idempotency_keys_unique_per_owner(database_url: str, monkeypatch: Any) -> None:
    """A sweep stored under 0005 keeps its row with no key; afterwards (owner, key) is
    unique, while keyless sweeps and another owner's same key are not refused; the
    downgrade drops both columns and keeps the sweeps."""
    monkeypatch.setenv("DEEPZOO_DATABASE_URL", database_url)
    reset_caches()
    from app.db import migrate
    from app.db.session import get_engine

    if database_url.startswith("postgresql"):
        with get_engine().begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate.upgrade(revision="0005")
    insert = text(
        "INSERT INTO sweeps (id, owner, spec, grid, method, trials, parallel, metric, goal,"
        " seed, status, created_at) VALUES (:id, :owner, '{}', '{}', 'grid', 1, 1,"
        " 'val_loss', 'min', 0, 'running', :now)"
    )
    now = datetime.now(UTC)
    with get_engine().begin() as conn:
        conn.execute(insert, {"id": "swp_old", "owner": "admin", "now": now})

    migrate.upgrade()
    keyed = text(
        "INSERT INTO sweeps (id, owner, spec, grid, method, trials, parallel, metric, goal,"
        " seed, status, created_at, idempotency_key, request_hash) VALUES (:id, :owner, '{}',"
        " '{}', 'grid', 1, 1, 'val_loss', 'min', 0, 'running', :now, :key, 'h')"
    )
    with get_engine().begin() as conn:
        old = conn.execute(
            text("SELECT idempotency_key, request_hash FROM sweeps WHERE id = 'swp_old'")
        ).one()
        assert tuple(old) == (None, None)
        conn.execute(insert, {"id": "swp_nokey", "owner": "admin", "now": now})
        conn.execute(keyed, {"id": "swp_k", "owner": "admin", "now": now, "key": "k1"})
        conn.execute(keyed, {"id": "swp_theirs", "owner": "other", "now": now, "key": "k1"})
    with pytest.raises(sa.exc.IntegrityError):
        with get_engine().begin() as conn:
            conn.execute(keyed, {"id": "swp_again", "owner": "admin", "now": now, "key": "k1"})

    migrate.downgrade("0005")
    columns = {c["name"] for c in sa.inspect(get_engine()).get_columns("sweeps")}
    assert not {"idempotency_key", "request_hash"} & columns
    with get_engine().connect() as conn:
        ids = set(conn.execute(text("SELECT id FROM sweeps")).scalars())
    assert ids == {"swp_old", "swp_nokey", "swp_k", "swp_theirs"}
    migrate.upgrade()
    reset_caches()
