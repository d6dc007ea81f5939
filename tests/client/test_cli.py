"""The ``deepzoo`` command, run as a real subprocess (``python -m deepzoo``, what the
console script calls) against a real stack."""

from __future__ import annotations

import csv
import io
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import deepzoo
from tests.stack import ADMIN_KEY, ROOT, Stack
from tests.support.jobs import PNG_MAGIC

pytestmark = pytest.mark.e2e

COMMANDS = [
    "models", "datasets", "submit", "jobs", "show", "wait", "events", "logs", "metrics",
    "cancel", "resume", "clone", "delete", "predict", "log-prob", "samples", "plot",
    "trajectory", "compare", "keys", "keys list", "keys create", "keys revoke", "sweep",
    "sweep create", "sweep list", "sweep show", "sweep wait", "sweep cancel", "sweep plot",
]  # fmt: skip


def deepzoo_cmd(
    *args: str, url: str | None = None, stdin: str | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'client'}{os.pathsep}{ROOT}"}
    env.pop("DEEPZOO_URL", None)
    env["DEEPZOO_API_KEY"] = ADMIN_KEY
    if url:
        env["DEEPZOO_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "deepzoo", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_help_for_every_command() -> None:
    top = deepzoo_cmd("--help")
    assert top.returncode == 0 and "Exit codes" in top.stdout
    for command in COMMANDS:
        done = deepzoo_cmd(*command.split(), "--help")
        assert done.returncode == 0, (command, done.stderr)
        assert "Usage: deepzoo" in done.stdout, command


def test_submit_with_overrides_and_follow(client_stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": "mlp", "dataset": "moons", "train": {"epochs": 50}}))
    done = deepzoo_cmd(
        "submit", str(spec), "--set", "train.epochs=2", "--set", "params.hidden=[8]",
        "--set", "name=cli run", "--set", "tags.team=a", "--follow", url=client_stack.url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip().splitlines()[-1]
    assert "succeeded" in done.stderr and "Traceback" not in done.stderr
    job = client_stack.job(job_id)
    assert job["status"] == "succeeded" and job["spec"]["train"]["epochs"] == 2
    assert job["spec"]["params"]["hidden"] == [8] and job["name"] == "cli run"
    assert job["tags"] == {"team": "a"}

    # the same from standard input, as JSON lines of events
    spec_text = json.dumps({"model": "mlp", "dataset": "moons", "train": {"epochs": 1}})
    done = deepzoo_cmd("--json", "submit", "-", "--follow", url=client_stack.url, stdin=spec_text)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["event"] == "status" and lines[-1]["status"] == "succeeded"
    events = [line for line in lines if "event" in line]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))


def test_invalid_spec_exits_2_naming_the_field(client_stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": "mlp", "dataset": "moons"}))
    done = deepzoo_cmd("submit", str(spec), "--set", "params.hidden=[0]", url=client_stack.url)
    assert done.returncode == 2
    assert "params.hidden[0]" in done.stderr and "422" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    for bad in (["--set", "nodot"], ["--set", "train..epochs=1"]):
        done = deepzoo_cmd("submit", str(spec), *bad, url=client_stack.url)
        assert done.returncode == 2 and "--set" in done.stderr, done.stderr
    spec.write_text("{not json")
    done = deepzoo_cmd("submit", str(spec), url=client_stack.url)
    assert done.returncode == 2 and "not JSON" in done.stderr
    done = deepzoo_cmd("show", "job_nope", url=client_stack.url)
    assert done.returncode == 2 and "404" in done.stderr and "Traceback" not in done.stderr
    done = deepzoo_cmd("models", url="http://127.0.0.1:9")
    assert done.returncode == 2 and "127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr


def test_jobs_watch_refreshes_until_interrupted(
    client_stack: Stack, moons_job: deepzoo.Job
) -> None:
    """``jobs --watch`` redraws the table every 2 s; Ctrl-C (SIGINT) ends it cleanly, exit 0.
    ``TTY_COMPATIBLE`` makes rich draw each refresh into the pipe as on a terminal (else it
    prints only the last), so the test waits for a second drawing, not for a time."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'client'}{os.pathsep}{ROOT}"}
    env.update(
        DEEPZOO_API_KEY=ADMIN_KEY, DEEPZOO_URL=client_stack.url, COLUMNS="200", TTY_COMPATIBLE="1"
    )
    with subprocess.Popen(
        [sys.executable, "-m", "deepzoo", "jobs", "--watch"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        seen, deadline = b"", time.monotonic() + 60
        while seen.count(moons_job.id.encode()) < 2 and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 1.0)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:  # the command ended
                    break
                seen += chunk
        assert seen.count(moons_job.id.encode()) >= 2, seen  # drawn, then redrawn
        assert proc.poll() is None  # still watching
        proc.send_signal(signal.SIGINT)
        _, errors = proc.communicate(timeout=30)
    assert proc.returncode == 0, errors
    assert b"Traceback" not in errors


def test_a_failed_job_exits_1(client_stack: Stack, tmp_path: Path) -> None:
    """A job past its wall-clock limit fails: ``submit --follow`` and ``wait`` exit 1."""
    spec = tmp_path / "spec.json"
    slow = {"model": "mlp", "dataset": "moons", "train": {"epochs": 100000, "max_minutes": 0.001}}
    spec.write_text(json.dumps(slow))
    done = deepzoo_cmd("submit", str(spec), "--follow", url=client_stack.url)
    assert done.returncode == 1, done.stderr
    job_id = done.stdout.strip().splitlines()[-1]
    assert "failed" in done.stderr
    done = deepzoo_cmd("wait", job_id, url=client_stack.url)
    assert done.returncode == 1 and done.stdout.strip() == job_id


def test_metrics_samples_plot_compare_show(
    client_stack: Stack, moons_job: deepzoo.Job, flow_job: deepzoo.Job, tmp_path: Path
) -> None:
    url = client_stack.url
    done = deepzoo_cmd("metrics", moons_job.id, "--format", "csv", url=url)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert rows and set(rows[0]) == {"name", "step", "value", "time"}
    assert {"train_loss"} <= {r["name"] for r in rows}
    done = deepzoo_cmd("metrics", moons_job.id, "--format", "json", url=url)
    assert {r["name"] for r in json.loads(done.stdout)} == {r["name"] for r in rows}
    done = deepzoo_cmd("metrics", moons_job.id, url=url)
    assert done.returncode == 0 and "train_loss" in done.stdout

    grid = tmp_path / "grid.png"
    done = deepzoo_cmd("samples", flow_job.id, "-n", "64", "-o", str(grid), url=url)
    assert done.returncode == 0, done.stderr
    assert grid.read_bytes().startswith(PNG_MAGIC)
    done = deepzoo_cmd("--json", "samples", flow_job.id, "-n", "3", url=url)
    assert len(json.loads(done.stdout)["samples"]) == 3

    picture = tmp_path / "plot.png"
    done = deepzoo_cmd("plot", moons_job.id, "-o", str(picture), url=url)
    assert done.returncode == 0, done.stderr
    assert picture.read_bytes().startswith(PNG_MAGIC) and "reliability" in done.stderr

    done = deepzoo_cmd("compare", moons_job.id, flow_job.id, url=url)
    assert done.returncode == 0, done.stderr
    assert moons_job.id in done.stdout and flow_job.id in done.stdout
    assert "train_loss" in done.stdout

    done = deepzoo_cmd("show", moons_job.id, url=url)
    assert done.returncode == 0 and "succeeded" in done.stdout and "moons" in done.stdout
    done = deepzoo_cmd("--json", "jobs", "--status", "succeeded", "--limit", "5", url=url)
    assert done.returncode == 0 and all(j["status"] == "succeeded" for j in json.loads(done.stdout))
    done = deepzoo_cmd("jobs", "--model", "flow", url=url)
    assert done.returncode == 0 and flow_job.id in done.stdout
    done = deepzoo_cmd("--json", "predict", moons_job.id, "--inputs", "[[0.0, 0.5]]", url=url)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["probs"]) == 1
    inputs = tmp_path / "inputs.json"
    inputs.write_text("[[0.0, 0.5], [1.0, 0.0]]")
    done = deepzoo_cmd("predict", moons_job.id, "--inputs", f"@{inputs}", url=url)
    assert done.returncode == 0 and len(json.loads(done.stdout)["probs"]) == 2
    done = deepzoo_cmd("log-prob", flow_job.id, "--inputs", "[[0.5, 0.25]]", url=url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["exact"] is True
    done = deepzoo_cmd("samples", flow_job.id, "-o", str(tmp_path / "no" / "x.png"), url=url)
    assert done.returncode == 2 and "No such file" in done.stderr
    assert "Traceback" not in done.stderr
    done = deepzoo_cmd("logs", moons_job.id, url=url)
    assert done.returncode == 0 and "succeeded" in done.stdout.splitlines()[-1]


def test_lifecycle_and_keys(client_stack: Stack, tmp_path: Path) -> None:
    url = client_stack.url
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": "mlp", "dataset": "moons", "train": {"epochs": 5000}}))
    job_id = deepzoo_cmd("submit", str(spec), url=url).stdout.strip()
    assert job_id.startswith("job_")
    done = deepzoo_cmd("cancel", job_id, url=url)
    assert done.returncode == 0 and job_id in done.stdout
    assert deepzoo_cmd("wait", job_id, "--timeout", "60", url=url).returncode == 1  # cancelled
    done = deepzoo_cmd("clone", job_id, "--set", "train.epochs=1", "--follow", url=url)
    assert done.returncode == 0, done.stderr
    copy = done.stdout.strip().splitlines()[-1]
    assert client_stack.job(copy)["provenance"]["cloned_from"] == job_id
    assert deepzoo_cmd("delete", copy, url=url).returncode == 0
    done = deepzoo_cmd("--json", "keys", "create", "cli key", url=url)
    key = json.loads(done.stdout)
    assert key["key"].startswith("dz_")
    done = deepzoo_cmd("keys", "list", url=url)
    assert key["id"] in done.stdout and key["key"] not in done.stdout
    assert deepzoo_cmd("keys", "revoke", key["id"], url=url).returncode == 0
    done = deepzoo_cmd("--json", "datasets", url=url)
    assert any(d["id"] == "moons" for d in json.loads(done.stdout))
    data = ROOT / "docs" / "examples" / "data.csv"
    done = deepzoo_cmd("datasets", "--upload", str(data), "--target", "price", url=url)
    assert done.returncode == 0 and "table" in done.stdout and "regression" in done.stdout
    done = deepzoo_cmd("datasets", url=url)
    assert "data" in done.stdout and "table" in done.stdout
    done = deepzoo_cmd("models", url=url)
    assert done.returncode == 0 and "mc_dropout" in done.stdout


def test_a_sweep_from_the_command_line(client_stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": "mlp", "dataset": "moons", "train": {"epochs": 1}}))
    done = deepzoo_cmd(
        "--json", "sweep", "create", str(spec), "--vary", "optimizer.lr=[0.01,0.1]",
        "--set", "params.hidden=[8]", "--parallel", "2", "--name", "cli sweep", "--wait",
        url=client_stack.url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sweep = json.loads(done.stdout)
    assert sweep["status"] == "finished" and sweep["counts"] == {"succeeded": 2}
    metrics = [c["metric"] for c in sweep["children"]]
    assert metrics == sorted(metrics)

    shown = deepzoo_cmd("sweep", "show", sweep["id"], url=client_stack.url)
    assert shown.returncode == 0 and "optimizer.lr" in shown.stdout and "val_loss" in shown.stdout
    listed = deepzoo_cmd("sweep", "list", url=client_stack.url)
    assert listed.returncode == 0 and sweep["id"] in listed.stdout
    png = tmp_path / "sweep.png"
    plotted = deepzoo_cmd("sweep", "plot", sweep["id"], "-o", str(png), url=client_stack.url)
    assert plotted.returncode == 0 and png.read_bytes().startswith(PNG_MAGIC)
    bad = deepzoo_cmd(
        "sweep", "create", str(spec), "--vary", "optimizer.lr=0.1", url=client_stack.url
    )
    assert bad.returncode == 2 and "--vary" in bad.stderr
    bad = deepzoo_cmd(
        "sweep", "create", str(spec), "--vary", "optimizer.lr=[-1]", url=client_stack.url
    )
    assert bad.returncode == 2 and "grid.optimizer.lr" in bad.stderr and "422" in bad.stderr


def test_trajectory_table_json_and_png(
    client_stack: Stack, optim_job: deepzoo.Job, moons_job: deepzoo.Job, tmp_path: Path
) -> None:
    url = client_stack.url
    done = deepzoo_cmd("trajectory", optim_job.id, url=url)
    assert done.returncode == 0, done.stderr
    assert "adam lr 0.05 on rosenbrock (dim 2), 21 points" in done.stdout
    assert "grad_norm" in done.stdout and "12.5" in done.stdout  # the start's loss
    done = deepzoo_cmd("--json", "trajectory", optim_job.id, url=url)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["steps"] == list(range(21)) and body["path"][0] == [-1.5, 2.0]
    png = tmp_path / "path.png"
    done = deepzoo_cmd("trajectory", optim_job.id, "-o", str(png), url=url)
    assert done.returncode == 0 and "wrote" in done.stderr, done.stderr
    assert png.read_bytes().startswith(PNG_MAGIC)
    done = deepzoo_cmd("trajectory", moons_job.id, url=url)  # an mlp has no path: 409
    assert done.returncode == 2 and "409" in done.stderr and "Traceback" not in done.stderr
