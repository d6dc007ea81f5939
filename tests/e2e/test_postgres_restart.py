"""PostgreSQL crashes and restarts while a job trains: the worker's writes retry and the
job finishes on its first attempt, with nothing half-written.

The test runs its own PostgreSQL server (``initdb`` into a temporary directory, on a free
port), so stopping it disturbs no other test and no other user of the machine's server.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.stack import Stack, free_port, wait_until
from tests.support.e2e import SINE, assert_clean_curve
from tests.support.services import redis_url

pytestmark = pytest.mark.e2e


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are required")
    return Path(found[-1]).parent


class PrivatePostgres:
    """A throwaway cluster; run as the ``postgres`` user when we are root (initdb refuses
    root)."""

    def __init__(self, root: Path) -> None:
        self.bin, self.port = _pg_bin(), free_port()
        self.dir = root / "pgdata"
        self.sock = root / "pgsock"
        self.log = root / "postgres.log"
        self.prefix: list[str] = []
        self.user = "postgres"
        if os.geteuid() == 0:
            self.prefix = ["runuser", "-u", "postgres", "--"]
            pw = pwd.getpwnam("postgres")
            for p in (root, self.sock):
                p.mkdir(exist_ok=True)
                os.chown(p, pw.pw_uid, pw.pw_gid)
        else:
            self.sock.mkdir(exist_ok=True)
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.url = f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", self.user)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-l", str(self.log), "-w",
                  "-o", opts, "start")  # fmt: skip

    def crash(self) -> None:
        """``immediate``: no checkpoint, every connection cut; the next start recovers."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", "immediate", "stop")

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    # not under pytest's tmp_path: the ``postgres`` user must be able to reach it
    root = Path(tempfile.mkdtemp(prefix="deepzoo-pg-"))
    pg = PrivatePostgres(root)
    pg.init()
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_crash_mid_job(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    # a 30 s heartbeat timeout: the job must ride the outage out on its own worker,
    # through retried writes, rather than be re-queued by the reconciler
    stack = Stack(
        tmp_path,
        private_pg.url,
        redis_url(13),
        extra_env={"DEEPZOO_HEARTBEAT_TIMEOUT_SECONDS": "30"},
    )
    try:
        stack.start()
        epochs = 300
        job = stack.post_job({**SINE, "train": {"epochs": epochs, "seed": 3}})
        wait_until(lambda: stack.job(job["id"])["progress"]["step"] >= 20, 120, "training")
        private_pg.crash()
        # the API answers 503 with a time to come back, not a 500, while the server is down
        down = stack.client.get(f"/v1/jobs/{job['id']}")
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"] and "unavailable" in down.json()["detail"]
        time.sleep(3)  # the worker keeps training; its writes fail and wait
        private_pg.start()
        done = stack.wait_status(job["id"], {"succeeded", "failed"}, timeout=240)
        assert done["status"] == "succeeded", done["error"]
        assert done["attempts"] == 1
        assert_clean_curve(stack, job["id"], "train_loss", epochs)
        # nothing half-written: every checkpoint's bytes match their sha256
        ckpts = stack.client.get(f"/v1/jobs/{job['id']}/checkpoints").json()
        assert ckpts
        for c in ckpts:
            blob = stack.client.get(f"/v1/jobs/{job['id']}/checkpoints/{c['id']}")
            assert (
                blob.status_code == 200 and hashlib.sha256(blob.content).hexdigest() == c["sha256"]
            )
        worker_log = (tmp_path / "worker-w1.log").read_text()
        assert "retrying" in worker_log, "the outage was seen by the worker's writes"
        r = stack.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[0.0]]})
        assert r.status_code == 200, r.text
    finally:
        stack.stop()
    engine = create_engine(private_pg.url)
    with engine.connect() as conn:  # the server recovered a consistent database
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 1
    engine.dispose()
