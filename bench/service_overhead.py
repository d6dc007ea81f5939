"""Service overhead: one spec trained through the service against the family's ``fit``
called directly in one process (``LocalContext``). Goal: <= 1.05x.

    python -m bench.service_overhead [--repeats 3]

"Service" is POST -> status succeeded as the client sees it (queueing, the worker's
fork, data loading, metrics, checkpoints and heartbeats included); "bare" is load data,
build, fit in this process. The two alternate so drift hits both alike.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Any

import torch

from bench.common import median, running_stack, save
from models.context import LocalContext
from models.data import load
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


# the service's defaults, not the e2e tests' fast fault-detection settings
PRODUCTION_TIMING = {
    "DEEPZOO_HEARTBEAT_SECONDS": "0.5",
    "DEEPZOO_HEARTBEAT_TIMEOUT_SECONDS": "30",
    "DEEPZOO_RECONCILE_SECONDS": "5",
    "DEEPZOO_CHECKPOINT_MIN_SECONDS": "10",
}


def bare(spec: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    family = get_family(spec["model"])
    params = family.params(**spec.get("params", {}))
    seed_everything(spec["train"]["seed"])
    data = load.__wrapped__(spec["dataset"])  # uncached: the worker loads it too
    module = family.build(params, data.info)
    ctx = LocalContext(
        epochs=spec["train"]["epochs"],
        batch_size=spec["train"]["batch_size"],
        seed=spec["train"]["seed"],
        optimizer=OptimizerSpec(**spec["optimizer"]),
    )
    family.fit(module, data, params, ctx)
    return time.perf_counter() - t0


def service(stack: Any, spec: dict[str, Any]) -> tuple[float, float]:
    """(POST -> succeeded, worker start -> finish) from the job's own timestamps.

    The client waits on the SSE stream rather than polling, so the benchmark itself
    takes no CPU from the worker on this 2-core machine.
    """
    job = stack.post_job(spec)
    stack.follow_events(job["id"])
    j = stack.job(job["id"])
    assert j["status"] == "succeeded", j["error"]
    created, started, finished = (
        datetime.fromisoformat(j[k]) for k in ("created_at", "started_at", "finished_at")
    )
    return (finished - created).total_seconds(), (finished - started).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", choices=["embedded", "postgres"], default="embedded")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    results: dict[str, Any] = {"backend": args.backend, "repeats": args.repeats, "specs": {}}
    with running_stack(args.backend, PRODUCTION_TIMING) as stack:
        for name, spec in SPECS.items():
            bare_t, svc_t, worker_t = [], [], []
            service(stack, {**spec, "train": {**spec["train"], "epochs": 1}})  # warm caches
            for _ in range(args.repeats):
                bare_t.append(bare(spec))
                wall, worker = service(stack, spec)
                svc_t.append(wall)
                print(f"  bare {bare_t[-1]:.2f}s service {wall:.2f}s", flush=True)
                worker_t.append(worker)
            row = {
                "bare_s": median(bare_t),
                "service_s": median(svc_t),
                "worker_s": median(worker_t),
                "ratio": median(svc_t) / median(bare_t),
            }
            results["specs"][name] = row
            print(
                f"{name:24s} bare {row['bare_s']:.2f}s  service {row['service_s']:.2f}s "
                f"(worker {row['worker_s']:.2f}s)  ratio {row['ratio']:.3f}x  (goal <= 1.05x)",
                flush=True,
            )
    save(f"service_overhead_{args.backend}", results)


if __name__ == "__main__":
    main()
