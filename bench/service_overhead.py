"""Service overhead: one spec trained through the service against the family's ``fit``
called directly in one process (``LocalContext``). Goal: <= 1.05x.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python -m bench.service_overhead [--repeats 5]
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python -m bench.service_overhead --phases 5

"Service" is the time the client sees: from just before its ``POST /v1/jobs`` to the
moment it reads the job's terminal status event on ``GET /v1/jobs/{id}/events`` (SSE, the
server's default poll), so queueing, the worker's per-job process, data loading, metrics,
checkpoints, heartbeats, the final calibration evaluation and the stream's delivery are
all in it. "Bare" is load data, build, fit in one long-lived process (``BareProcess``:
its own session, as the worker's, so the scheduler gives both sides a share alike).
Both sides are warmed alike (one 1-epoch run each before timing), both train on one
torch thread (``OMP_NUM_THREADS=1`` for the bare process and the worker), and the sides
alternate run by run, the first side swapping every run, so load on the shared machine
falls on both.

Every spec runs at two lengths (``--short``/``--long`` epochs), which separates the
fixed cost per job from the per-epoch cost: service - bare at each length, and the line
time = a + b * epochs through each side's medians (a: the fixed cost, b: per epoch).

``--phases N`` instead profiles where the service's seconds go, without Celery: the API
queues the job (no worker), and this process, warmed as the worker's parent is
(``workers.runner.warm_up``), forks a child per job that runs ``run_job`` with timers on
the runner's phases, as the prefork pool's fresh child does. Beside it, the bare run in a
forked child (a fresh process's first-use costs) and in this warmed process.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import torch

from bench.common import median, running_stack, save
from models.context import LocalContext
from models.data import load_data
from models.optim import OptimizerSpec
from models.registry import get_family
from workers.runner import seed_everything

SPECS: dict[str, dict[str, Any]] = {
    "mc_dropout/sine_gap": {
        "model": "mc_dropout",
        "dataset": "sine_gap",
        "params": {"hidden": [64, 64, 64], "dropout": 0.1},
        "optimizer": {"name": "adam", "lr": 0.003},
        "train": {"epochs": 200, "batch_size": 64, "seed": 0},
    },
    "mlp/mnist5k": {
        "model": "mlp",
        "dataset": "mnist5k",
        "params": {"hidden": [256, 256], "batchnorm": True},
        "optimizer": {"name": "adam", "lr": 0.001},
        "train": {"epochs": 10, "batch_size": 64, "seed": 0},
    },
}
# (short, long) epochs per spec: the long one is the documented spec
LENGTHS = {"mc_dropout/sine_gap": (50, 200), "mlp/mnist5k": (2, 10)}

# the service's defaults, not the e2e tests' fast fault-detection settings
PRODUCTION_TIMING = {
    "DEEPZOO_HEARTBEAT_SECONDS": "0.5",
    "DEEPZOO_HEARTBEAT_TIMEOUT_SECONDS": "30",
    "DEEPZOO_RECONCILE_SECONDS": "5",
    "DEEPZOO_CHECKPOINT_MIN_SECONDS": "10",
}
# one torch thread in the worker, as in this process
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TERMINAL = {"succeeded", "failed", "cancelled"}
SETTLE_S = 1.0  # idle before every run, either side


def with_epochs(spec: dict[str, Any], epochs: int) -> dict[str, Any]:
    return {**spec, "train": {**spec["train"], "epochs": epochs}}


def bare(spec: dict[str, Any], timers: dict[str, float] | None = None) -> float:
    t0 = time.perf_counter()
    family = get_family(spec["model"])
    params = family.params(**spec.get("params", {}))
    seed_everything(spec["train"]["seed"])
    data = load_data.__wrapped__(spec["dataset"])  # uncached: the worker loads it too
    t1 = time.perf_counter()
    module = family.build(params, data.info)
    ctx = LocalContext(
        epochs=spec["train"]["epochs"],
        batch_size=spec["train"]["batch_size"],
        seed=spec["train"]["seed"],
        optimizer=OptimizerSpec(**spec["optimizer"]),
    )
    t2 = time.perf_counter()
    family.fit(module, data, params, ctx)
    t3 = time.perf_counter()
    if timers is not None:
        timers.update({"load_dataset": t1 - t0, "build": t2 - t1, "fit": t3 - t2})
    return t3 - t0


class BareProcess:
    """The bare side in its own long-lived process and session, as the worker is.

    Linux groups the scheduler's fair shares by session (autogroup): run in this process,
    the bare side would share one session's share with whatever else runs in the
    benchmark's terminal, while the worker's processes (``start_new_session``) get a
    share of their own. Measured here with another benchmark in the same terminal: bare
    runs took 1.8x as long as the same loop inside the service.
    """

    def __init__(self) -> None:
        env = {**os.environ, **ONE_THREAD}
        args = [sys.executable, "-m", "bench.service_overhead", "--bare-server"]
        self.proc = subprocess.Popen(
            args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )

    def run(self, spec: dict[str, Any]) -> dict[str, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(spec).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the bare process exited"
        return dict(json.loads(line))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def bare_server() -> None:
    """``--bare-server``: one JSON spec a line on stdin, its timings a line on stdout."""
    torch.set_num_threads(1)
    for line in sys.stdin:
        timers: dict[str, float] = {}
        timers["total"] = bare(json.loads(line), timers)
        sys.stdout.write(json.dumps(timers) + "\n")
        sys.stdout.flush()


def follow_to_terminal(client: httpx.Client, job_id: str, timeout: float = 600) -> str:
    """Read the job's SSE stream until its terminal status event; that status."""
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as r:
        assert r.status_code == 200, r.status_code
        ev: dict[str, str] = {}
        for line in r.iter_lines():
            if not line:
                if ev.get("event") == "status":
                    status = json.loads(ev["data"])["status"]
                    if status in TERMINAL:
                        return str(status)
                ev = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                ev[key] = value
    raise AssertionError(f"job {job_id}: the stream ended without a terminal status")


def service(stack: Any, spec: dict[str, Any]) -> dict[str, float]:
    """The client's POST -> terminal SSE event, and its parts from the job's timestamps:
    post (the POST's round trip), queue (created -> the worker's claim), worker (claim ->
    finished), delivery (finished -> the client read the terminal event)."""
    w0, t0 = time.time(), time.perf_counter()
    job = stack.post_job(spec)
    t_post = time.perf_counter()
    status = follow_to_terminal(stack.client, job["id"])
    t_end, w_end = time.perf_counter(), time.time()
    j = stack.job(job["id"])
    assert status == "succeeded", j["error"]
    created, started, finished = (
        datetime.fromisoformat(j[k]).timestamp()
        for k in ("created_at", "started_at", "finished_at")
    )
    return {
        "client": t_end - t0,
        "post": t_post - t0,
        "to_created": created - w0,
        "queue": started - created,
        "worker": finished - started,
        "delivery": w_end - finished,
    }


def line_fit(e1: int, y1: float, e2: int, y2: float) -> tuple[float, float]:
    """(a, b) of y = a + b * epochs through two points."""
    b = (y2 - y1) / (e2 - e1)
    return y1 - b * e1, b


def spread(v: list[float]) -> str:
    return f"{min(v):.2f}–{max(v):.2f}"


def overhead(stack: Any, bare_proc: BareProcess, names: list[str], repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        spec = SPECS[name]
        short, long_ = LENGTHS[name]
        bare_proc.run(with_epochs(spec, 1))  # warm both sides alike
        service(stack, with_epochs(spec, 1))
        runs: dict[int, dict[str, list[Any]]] = {e: {"bare": [], "svc": []} for e in (short, long_)}
        k = 0
        for _ in range(repeats):
            for epochs in (short, long_):
                s = with_epochs(spec, epochs)
                for side in ("bare", "svc") if k % 2 == 0 else ("svc", "bare"):
                    # let the worker replace its last per-job child first (~0.3 s, see
                    # queue_latency), so no job waits on the one before
                    time.sleep(SETTLE_S)
                    runs[epochs][side].append(
                        bare_proc.run(s)["total"] if side == "bare" else service(stack, s)
                    )
                k += 1
                b, v = runs[epochs]["bare"][-1], runs[epochs]["svc"][-1]
                print(
                    f"  {name} {epochs:4d} epochs: bare {b:.2f}s service {v['client']:.2f}s "
                    f"(post {v['post']:.3f} queue {v['queue']:.3f} worker {v['worker']:.2f} "
                    f"delivery {v['delivery']:.3f})",
                    flush=True,
                )
        rows = {}
        for epochs, r in runs.items():
            client = [v["client"] for v in r["svc"]]
            diffs = [v["client"] - b for v, b in zip(r["svc"], r["bare"], strict=True)]
            rows[epochs] = {
                "bare_s": median(r["bare"]),
                "bare_spread": spread(r["bare"]),
                "service_s": median(client),
                "service_spread": spread(client),
                "ratio": median(client) / median(r["bare"]),
                "ratios": [v["client"] / b for v, b in zip(r["svc"], r["bare"], strict=True)],
                "service_minus_bare_s": median(diffs),
                "service_minus_bare_spread": spread(diffs),
                **{
                    f"{part}_s": median([v[part] for v in r["svc"]])
                    for part in ("post", "queue", "worker", "delivery")
                },
                "bare_runs": r["bare"],
                "service_runs": r["svc"],
            }
            x = rows[epochs]
            print(
                f"{name:22s} {epochs:4d} epochs  bare {x['bare_s']:.2f}s ({x['bare_spread']})  "
                f"service {x['service_s']:.2f}s ({x['service_spread']})  "
                f"ratio {x['ratio']:.3f}x  service-bare {x['service_minus_bare_s']:+.2f}s "
                f"({x['service_minus_bare_spread']})  [post {x['post_s']:.3f} queue "
                f"{x['queue_s']:.3f} worker {x['worker_s']:.2f} delivery {x['delivery_s']:.3f}]",
                flush=True,
            )
        a_b, b_b = line_fit(short, rows[short]["bare_s"], long_, rows[long_]["bare_s"])
        a_s, b_s = line_fit(short, rows[short]["service_s"], long_, rows[long_]["service_s"])
        fit = {
            "bare_fixed_s": a_b,
            "bare_per_epoch_s": b_b,
            "service_fixed_s": a_s,
            "service_per_epoch_s": b_s,
            "fixed_cost_s": a_s - a_b,
            "per_epoch_ratio": b_s / b_b,
        }
        print(
            f"{name:22s} fit a + b*epochs: bare {a_b:.2f}s + {1000 * b_b:.1f}ms/epoch, "
            f"service {a_s:.2f}s + {1000 * b_s:.1f}ms/epoch -> fixed cost per job "
            f"{a_s - a_b:+.2f}s, per-epoch ratio {b_s / b_b:.3f}x",
            flush=True,
        )
        out[name] = {"lengths": {str(e): row for e, row in rows.items()}, "fit": fit}
    return out


# --- --phases: where the service's seconds go ----------------------------------------------


def _timed(timers: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timers[name] += time.perf_counter() - t0
            timers[name + "_n"] += 1

    return wrapper


def _in_child(fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``fn()`` in a forked child of this process (as the prefork pool runs a job)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            out = fn()
        except BaseException as exc:
            out = {"error": repr(exc)}  # type: ignore[dict-item]
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert "error" not in result, result
    return dict(result)


def _run_job_timed(job_id: str, heartbeat: bool = True) -> dict[str, float]:
    """``run_job`` with timers on the runner's phases (patched in this child only);
    without ``heartbeat``, the runner's heartbeat thread never starts (a diagnostic)."""
    from app.db.session import get_engine
    from workers import runner

    t_start = time.perf_counter()
    get_engine().dispose(close=False)  # as the worker's child init does
    timers: dict[str, float] = defaultdict(float)
    get_family = runner.get_family

    def timed_family(name: str) -> Any:
        family = get_family(name)
        return dataclasses.replace(family, fit=_timed(timers, "fit", family.fit))

    runner.get_family = timed_family
    runner.claim = _timed(timers, "claim", runner.claim)
    runner.load_dataset = _timed(timers, "load_dataset", runner.load_dataset)
    runner.log_calibration = _timed(timers, "calibration", runner.log_calibration)
    R, C = runner.Runner, runner.TrainContext
    R._load_resume = _timed(timers, "load_resume", R._load_resume)  # type: ignore[method-assign]
    R._record_start = _timed(timers, "record_start", R._record_start)  # type: ignore[method-assign]
    R._finish = _timed(timers, "finish", R._finish)  # type: ignore[method-assign]
    C.flush = _timed(timers, "metric_flush", C.flush)  # type: ignore[method-assign]
    H = runner.Heartbeat  # its own thread: its time overlaps the loop's (the GIL)
    H.beat = _timed(timers, "heartbeat", H.beat)  # type: ignore[method-assign]
    if not heartbeat:
        H.start = H.join = lambda self, *a, **k: None  # type: ignore[method-assign]
    C._write_checkpoint = _timed(timers, "checkpoint_write", C._write_checkpoint)  # type: ignore[method-assign]
    t0 = time.perf_counter()
    status = runner.run_job(job_id, worker="bench")
    timers["run_job"] = time.perf_counter() - t0
    timers["child_init"] = t0 - t_start
    assert status == "succeeded", status
    return dict(timers)


def _bare_timed(spec: dict[str, Any]) -> dict[str, float]:
    timers: dict[str, float] = {}
    timers["total"] = bare(spec, timers)
    return timers


PHASES = [
    ("child_init", "child init (engine dispose)"),
    ("claim", "claim (first DB connection, UPDATE, event)"),
    ("load_dataset", "load dataset (.npz cache)"),
    ("load_resume", "look for a checkpoint to resume"),
    ("record_start", "record start (data info, provenance)"),
    ("fit", "family.fit (incl. metric flushes, checkpoints in the loop)"),
    ("metric_flush", "  of which / after: metric flushes (all)"),
    ("checkpoint_write", "  of which / after: checkpoint writes (all)"),
    ("heartbeat", "  heartbeats (a thread, overlapping the loop)"),
    ("calibration", "calibration evaluation (reload checkpoint, predict test)"),
    ("finish", "finish (status, event)"),
    ("run_job", "run_job total"),
]


def phases(stack: Any, names: list[str], repeats: int, heartbeat: bool = True) -> dict[str, Any]:
    from app.config import get_settings
    from app.db.session import reset_engine
    from workers.runner import warm_up

    os.environ.update({k: v for k, v in stack.env.items() if k.startswith("DEEPZOO_")})
    get_settings.cache_clear()
    reset_engine()
    warm_up()  # what the worker's parent does before forking its children
    out: dict[str, Any] = {}
    for name in names:
        spec = SPECS[name]
        svc: list[dict[str, float]] = []
        child_bare: list[dict[str, float]] = []
        warm_bare: list[dict[str, float]] = []
        for i in range(repeats):
            job = stack.post_job(spec)
            svc.append(_in_child(functools.partial(_run_job_timed, job["id"], heartbeat)))
            child_bare.append(_in_child(functools.partial(_bare_timed, spec)))
            if i == 0:
                bare(with_epochs(spec, 1))  # warm this process, as in the overhead runs
            warm_bare.append(_bare_timed(spec))
            print(
                f"  {name}: run_job {svc[-1]['run_job']:.2f}s (fit {svc[-1]['fit']:.2f}s)  "
                f"bare in a fresh child {child_bare[-1]['total']:.2f}s (fit "
                f"{child_bare[-1]['fit']:.2f}s)  bare warm {warm_bare[-1]['total']:.2f}s "
                f"(fit {warm_bare[-1]['fit']:.2f}s)",
                flush=True,
            )
        med = {k: median([t.get(k, 0.0) for t in svc]) for k in svc[0]}
        print(f"{name} (medians of {repeats}, seconds):")
        for key, label in PHASES:
            n = median([t.get(key + "_n", 1.0) for t in svc])
            print(f"  {label:62s} {med.get(key, 0.0):7.3f}  (x{n:g})")
        for label, runs in (("bare, fresh child", child_bare), ("bare, warm process", warm_bare)):
            parts = "  ".join(
                f"{k} {median([t[k] for t in runs]):.3f}"
                for k in ("load_dataset", "build", "fit", "total")
            )
            print(f"  {label:24s} {parts}")
        out[name] = {
            "run_job": svc,
            "bare_fresh_child": child_bare,
            "bare_warm": warm_bare,
            "medians": med,
            "fit_sd": statistics.pstdev([t["fit"] for t in svc]),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", choices=["embedded", "postgres"], default="embedded")
    ap.add_argument("--specs", nargs="+", choices=list(SPECS), default=list(SPECS))
    ap.add_argument("--phases", type=int, metavar="N", help="profile the phases, N jobs a spec")
    ap.add_argument(
        "--no-heartbeat", action="store_true", help="--phases: without the runner's heartbeat"
    )
    ap.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_server:
        return bare_server()
    torch.set_num_threads(1)
    env = {**PRODUCTION_TIMING, **ONE_THREAD}
    results: dict[str, Any] = {"backend": args.backend, "repeats": args.repeats}
    with running_stack(args.backend, env, worker=not args.phases) as stack:
        if args.phases:
            results["phases"] = phases(stack, args.specs, args.phases, not args.no_heartbeat)
        else:
            bare_proc = BareProcess()
            try:
                results["specs"] = overhead(stack, bare_proc, args.specs, args.repeats)
            finally:
                bare_proc.close()
    kind = "phases" if args.phases else "overhead"
    save(f"service_{kind}_{args.backend}", results)


if __name__ == "__main__":
    main()
