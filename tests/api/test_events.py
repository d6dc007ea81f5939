"""Job events: per-job sequence numbers (the SSE ids), Last-Event-ID, race-free numbering,
and the cap on open streams per key; on SQLite and PostgreSQL, Redis real."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.jobs import SPEC


def _events(client: TestClient, job_id: str, last: str | None = None) -> list[tuple[int, str]]:
    headers = {"Last-Event-ID": last} if last is not None else {}
    r = client.get(f"/v1/jobs/{job_id}/events", headers=headers, params={"poll": 0.05})
    assert r.status_code == 200, r.text
    out = []
    for block in r.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            out.append((int(fields["id"]), json.loads(fields["data"])["status"]))
    return out


def test_event_ids_count_per_job(client: TestClient, other_client: TestClient) -> None:
    """Each job's events are numbered 1, 2, ... whoever else is busy: the ids tell an
    owner nothing about other owners' volume; Last-Event-ID resumes by that number."""
    for _ in range(3):  # someone else's events come first
        busy = other_client.post("/v1/jobs", json=SPEC).json()
        assert other_client.post(f"/v1/jobs/{busy['id']}/cancel").status_code == 200
    job = client.post("/v1/jobs", json=SPEC).json()
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert _events(client, job["id"]) == [(1, "queued"), (2, "cancelled")]
    assert _events(client, job["id"], last="1") == [(2, "cancelled")]
    assert _events(client, job["id"], last="2") == []
    resumed = client.post(f"/v1/jobs/{job['id']}/resume")
    assert resumed.status_code == 202
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert _events(client, job["id"], last="2") == [(3, "queued"), (4, "cancelled")]


@pytest.mark.parametrize(
    "value", [str(2**63), "99999999999999999999", "-1", "abc", "1.5"], ids=repr
)
def test_last_event_id_out_of_range_is_422(client: TestClient, value: str) -> None:
    job = client.post("/v1/jobs", json=SPEC).json()
    client.post(f"/v1/jobs/{job['id']}/cancel")  # terminal: a stream, if any, would end
    r = client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": value})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["path"] == "Last-Event-ID"
    strict = TestClient(client.app)  # an error inside the stream fails the test
    strict.headers["Authorization"] = client.headers["Authorization"]
    for last in (str(2**63 - 1), str(2**31)):
        ok = strict.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": last})
        assert ok.status_code == 200 and ok.text == "retry: 1000\n\n"


def test_stream_authenticates_before_anything(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=SPEC).json()
    anon = TestClient(client.app, raise_server_exceptions=False)
    r = anon.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "x"})
    assert r.status_code == 401
    assert client.get("/v1/jobs/job_0000000000000000/events").status_code == 404


def test_concurrent_writers_number_events_without_gaps(api_env: str) -> None:
    """The API and workers write a job's events from many sessions at once: the seqs come
    out 1..n, unique, none lost and no IntegrityError."""
    from app.db.models import Job, JobEvent
    from app.db.ops import add_event
    from app.db.session import session_scope

    with session_scope() as s:
        s.add(Job(id="job_race", owner="admin", model="mlp", dataset="moons", spec={}))
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(i: int) -> None:
        try:
            start.wait()
            for j in range(5):
                with session_scope() as s:
                    add_event(s, "job_race", "progress", {"writer": i, "n": j})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope() as s:
        seqs = s.scalars(select(JobEvent.seq).where(JobEvent.job_id == "job_race")).all()
        assert sorted(seqs) == list(range(1, 41))
        # each writer's own events keep their order
        rows = s.execute(select(JobEvent.seq, JobEvent.data).order_by(JobEvent.seq)).all()
        for i in range(8):
            assert [d["n"] for _, d in rows if d["writer"] == i] == list(range(5))
        assert s.get(Job, "job_race").event_seq == 40  # type: ignore[union-attr]


def test_stream_slots_cap_and_release(api_env: str, monkeypatch: Any) -> None:
    """At most DEEPZOO_MAX_STREAMS_PER_KEY open streams per key, counted in Redis (shared
    by API processes); 429 with Retry-After past it; a released slot is free again."""
    from app.config import get_settings
    from app.events import StreamSlots
    from app.problems import Problem

    monkeypatch.setenv("DEEPZOO_MAX_STREAMS_PER_KEY", "3")
    get_settings.cache_clear()
    one, two = StreamSlots(), StreamSlots()  # two API processes
    slots = [one.acquire("key_a"), two.acquire("key_a"), one.acquire("key_a")]
    assert all(s.shared for s in slots)
    with pytest.raises(Problem) as refused:
        two.acquire("key_a")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "5"
    other = one.acquire("key_b")  # another key has its own count
    one.release(slots[0])
    one.release(slots[0])  # twice is once
    assert two.open_streams("key_a") == 2
    slots.append(two.acquire("key_a"))
    for s in [*slots, other]:
        one.release(s)
    assert one.open_streams("key_a") == 0 and one.open_streams("key_b") == 0


def test_stream_slots_without_redis_count_per_process(api_env: str, monkeypatch: Any) -> None:
    from app.config import get_settings
    from app.events import StreamSlots
    from app.problems import Problem

    monkeypatch.setenv("DEEPZOO_MAX_STREAMS_PER_KEY", "2")
    monkeypatch.setenv("DEEPZOO_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing listens
    get_settings.cache_clear()
    slots = StreamSlots()
    a, b = slots.acquire("k"), slots.acquire("k")
    assert not a.shared and not b.shared
    with pytest.raises(Problem):
        slots.acquire("k")
    slots.release(a)
    slots.release(slots.acquire("k"))
    slots.release(b)
    assert slots.open_streams("k") == 0
