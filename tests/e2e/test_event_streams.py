"""200 open SSE streams (10 keys x 20) against a real uvicorn: the API stays fast, the
21st stream of a key is refused, and a stream's slot comes back when it ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stack import ADMIN_KEY, Stack, wait_until
from tests.support.services import fresh_pg_database, redis_url

KEYS, PER_KEY = 10, 20
# What the bound guards: streams holding pooled database connections (the pool has 15 or 30)
# would leave the API waiting out the pool's 30-s timeout; unloaded, it answers in
# tens of ms, so 10 s tells the two apart on a machine however loaded (the latencies are
# printed; speed is measured by bench/load.py, not by a test)
BOUND_S = 10.0


@pytest.fixture(params=["sqlite", "postgresql"])
def api_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    env = {"DEEPZOO_MAX_STREAMS_PER_KEY": str(PER_KEY)}
    with ExitStack() as cleanup:
        if request.param == "sqlite":
            s = Stack(tmp_path, f"sqlite:///{tmp_path / 'deepzoo.db'}", None, env)
        else:
            url = cleanup.enter_context(fresh_pg_database())
            s = Stack(tmp_path, url, redis_url(13), env)
        cleanup.callback(s.stop)
        s.start_api_only()  # no worker: the jobs stay queued and their streams open
        yield s


async def _streams(stack: Stack) -> dict[str, Any]:
    keys, jobs = [], []
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    limits = httpx.Limits(max_connections=KEYS * PER_KEY + 50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=stack.url, timeout=30, limits=limits) as client:
        for i in range(KEYS):
            key = (await client.post("/v1/keys", json={"name": f"k{i}"}, headers=admin)).json()
            auth = {"Authorization": f"Bearer {key['key']}"}
            spec = {"model": "mlp", "dataset": "moons", "params": {"hidden": [4]}}
            job = await client.post("/v1/jobs", json=spec, headers=auth)
            assert job.status_code == 201, job.text
            keys.append(auth)
            jobs.append(job.json()["id"])

        opened: list[asyncio.Event] = []
        ended: dict[int, list[str]] = {}

        async def follow(n: int, auth: dict[str, str], job_id: str, ready: asyncio.Event) -> None:
            url = f"/v1/jobs/{job_id}/events"
            async with client.stream("GET", url, headers=auth, timeout=None) as r:
                assert r.status_code == 200
                ready.set()
                lines = [line async for line in r.aiter_lines()]
            ended[n] = lines

        tasks = []
        t0 = time.monotonic()
        for i in range(KEYS):
            for _ in range(PER_KEY):
                ready = asyncio.Event()
                opened.append(ready)
                n = len(tasks)
                tasks.append(asyncio.create_task(follow(n, keys[i], jobs[i], ready)))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 60)
        open_s = time.monotonic() - t0

        async def timed(path: str, headers: dict[str, str]) -> float:
            t = time.monotonic()
            r = await client.get(path, headers=headers, timeout=30)
            assert r.status_code == 200, r.text
            return time.monotonic() - t

        latencies: dict[str, list[float]] = {"jobs": [], "healthz": []}
        for i in range(20):
            latencies["jobs"].append(await timed("/v1/jobs", keys[i % KEYS]))
            latencies["jobs"].append(await timed("/v1/jobs", admin))
            latencies["healthz"].append(await timed("/healthz", {}))
            await asyncio.sleep(0.05)

        # the 21st stream of a key is refused, others' keys are not affected
        extra = await client.get(f"/v1/jobs/{jobs[0]}/events", headers=keys[0])
        assert extra.status_code == 429, extra.text
        assert extra.headers["content-type"].startswith("application/problem+json")
        assert int(extra.headers["retry-after"]) > 0

        # a client that goes away gives its slot back
        tasks[0].cancel()
        t = time.monotonic()
        deadline = t + 15
        while True:
            async with client.stream("GET", f"/v1/jobs/{jobs[0]}/events", headers=keys[0]) as r:
                if r.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the slot of a closed stream never came back"
            await asyncio.sleep(0.1)
        released_s = time.monotonic() - t

        # a job's events reach its 20 open streams, which then end and free their slots
        cancel = await client.post(f"/v1/jobs/{jobs[1]}/cancel", headers=keys[1])
        assert cancel.status_code == 200
        mine = tasks[PER_KEY : 2 * PER_KEY]
        await asyncio.wait_for(asyncio.gather(*mine), 30)
        for n in range(PER_KEY, 2 * PER_KEY):
            assert "id: 2" in ended[n] and "event: status" in ended[n], ended[n]
        again = [await client.get(f"/v1/jobs/{jobs[1]}/events", headers=keys[1]) for _ in range(3)]
        assert all(r.status_code == 200 for r in again)  # terminal: they answer and end

        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"open_s": open_s, "released_s": released_s, **latencies}


@pytest.mark.e2e
def test_200_streams_hold_no_connections(api_stack: Stack) -> None:
    result = asyncio.run(_streams(api_stack))
    worst = {k: max(result[k]) for k in ("jobs", "healthz")}
    median = {k: sorted(result[k])[len(result[k]) // 2] for k in ("jobs", "healthz")}
    print(
        f"\n200 streams open in {result['open_s']:.2f}s; GET /v1/jobs median "
        f"{median['jobs'] * 1000:.0f} ms, worst {worst['jobs'] * 1000:.0f} ms; /healthz median "
        f"{median['healthz'] * 1000:.0f} ms, worst {worst['healthz'] * 1000:.0f} ms; slot back "
        f"{result['released_s']:.2f}s after its client left"
    )
    assert worst["jobs"] < BOUND_S and worst["healthz"] < BOUND_S, result
    # the server is still itself afterwards
    wait_until(lambda: api_stack.client.get("/healthz").status_code == 200, 10, "healthz")
