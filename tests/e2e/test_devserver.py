"""``make run`` (``python -m app.devserver``) stopped as a terminal stops it: Ctrl-C (SIGINT
to the foreground process group) or SIGTERM. The running job must be handed back with its
checkpoint, not killed: stopping the devserver costs no attempt."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stack import ROOT, free_port, wait_until

pytestmark = pytest.mark.e2e
KEY = "dz_devserver_admin_key_0123456789"
EPOCHS = 600
# tiny but long enough to be stopped twice: a few ms an epoch
JOB = {
    "model": "mlp",
    "dataset": "sine_gap",
    "params": {"hidden": [16]},
    "train": {"epochs": EPOCHS, "batch_size": 100, "seed": 7},
}


class DevServer:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.port = tmp, free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPZOO_")}
        self.env = {
            **env,
            "DEEPZOO_DATA_DIR": str(tmp / "var"),
            "DEEPZOO_PORT": str(self.port),
            "DEEPZOO_API_KEY": KEY,
            "DEEPZOO_HEARTBEAT_SECONDS": "0.25",
            "DEEPZOO_WORKER_ADVERTISE_SECONDS": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            timeout=30,
            headers={"Authorization": f"Bearer {KEY}"},
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = open(self.tmp / f"devserver-{self.runs}.log", "ab")
        # its own process group, as a shell gives a foreground job
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.devserver"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._up, 90, "the devserver's API")

    def _up(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int) -> int:
        """``sig`` to the devserver's whole process group, as the terminal sends Ctrl-C."""
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)
        rc = self.proc.wait(timeout=60)
        self.proc = None
        return rc

    def log(self) -> str:
        return (self.tmp / f"devserver-{self.runs}.log").read_text(errors="replace")[-4000:]

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.client.get(f"/v1/jobs/{job_id}").json())

    def row(self, job_id: str) -> tuple[str, int, int, int]:
        """(status, attempts, progress step, checkpoints) straight from the SQLite file."""
        with sqlite3.connect(self.tmp / "var" / "deepzoo.db") as db:
            status, attempts, step = db.execute(
                "SELECT status, attempts, progress_step FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            (checkpoints,) = db.execute(
                "SELECT count(*) FROM checkpoints WHERE job_id = ?", (job_id,)
            ).fetchone()
        return str(status), int(attempts), int(step), int(checkpoints)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.client.close()


@pytest.fixture
def devserver(tmp_path: Path) -> Iterator[DevServer]:
    d = DevServer(tmp_path)
    try:
        yield d
    finally:
        d.close()


def _running_past(d: DevServer, job_id: str, step: int) -> bool:
    j = d.job(job_id)
    return bool(j["status"] == "running" and j["progress"]["step"] > step)


def _ended(d: DevServer, job_id: str) -> dict[str, Any] | None:
    j = d.job(job_id)
    return j if j["status"] in {"succeeded", "failed"} else None


def _handed_back(d: DevServer, job_id: str, sig: int) -> None:
    """Stop the devserver with ``sig`` while the job trains: it is queued again, with its
    checkpoint and no attempt spent."""
    wait_until(lambda: _running_past(d, job_id, 2), 90, "the job to train")
    assert d.stop(sig) == 0, d.log()
    status, attempts, step, checkpoints = d.row(job_id)
    assert (status, attempts) == ("queued", 0), (sig, status, attempts, d.log())
    assert 0 < step < EPOCHS and checkpoints >= 1


def _post(d: DevServer, seed: int) -> str:
    r = d.client.post("/v1/jobs", json={**JOB, "train": {**JOB["train"], "seed": seed}})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_stopping_make_run_hands_the_job_back_and_spends_no_attempt(devserver: DevServer) -> None:
    """Ctrl-C hands the job back and the next start resumes it to the end; a plain kill
    hands back the next job the same way (two starts: each costs seconds)."""
    d = devserver
    d.start()
    first = _post(d, 7)
    _handed_back(d, first, signal.SIGINT)  # Ctrl-C
    d.start()  # resumes it from the checkpoint
    done = wait_until(lambda: _ended(d, first), 120, "the job to end")
    assert done["status"] == "succeeded" and done["attempts"] == 1, done
    with d.client.stream("GET", f"/v1/jobs/{first}/events") as ev:
        text = "".join(ev.iter_text())
    assert text.count('"handed_back": true') == 1, text
    rows = d.client.get(f"/v1/jobs/{first}/metrics", params={"name": "train_loss"}).json()
    assert sorted(m["step"] for m in rows["metrics"]) == list(range(1, EPOCHS + 1))

    second = _post(d, 8)
    _handed_back(d, second, signal.SIGTERM)  # a plain kill
