"""Load: 200 concurrent job submissions and 10,000 inference requests on loopback.

    python -m bench.load [--jobs 200] [--requests 10000] [--concurrency 32]

Every job must reach a terminal state and no response may be a 5xx; latency
percentiles are printed. The per-owner job limit and the inference rate limit are
raised for the run (they would answer 429 by design): this measures capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

from bench.common import percentile, running_stack, save
from bench.service_overhead import PRODUCTION_TIMING

JOB = {"model": "mlp", "dataset": "moons", "params": {"hidden": [16]}, "train": {"epochs": 1}}
UNLIMITED = {
    "DEEPZOO_MAX_ACTIVE_JOBS": "100000",
    "DEEPZOO_INFERENCE_RATE": "1000000",
    "DEEPZOO_INFERENCE_BURST": "1000000",
}


async def submit(client: httpx.AsyncClient, n: int) -> tuple[list[str], list[float], list[int]]:
    async def one(i: int) -> tuple[str, float, int]:
        t0 = time.perf_counter()
        r = await client.post("/v1/jobs", json={**JOB, "train": {"epochs": 1, "seed": i}})
        return (
            (r.json().get("id", "") if r.status_code == 201 else ""),
            time.perf_counter() - t0,
            r.status_code,
        )

    out = await asyncio.gather(*(one(i) for i in range(n)))
    return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]


async def infer(
    client: httpx.AsyncClient, job_id: str, n: int, conc: int
) -> tuple[list[float], list[int]]:
    lat: list[float] = []
    codes: list[int] = []
    body = {"inputs": [[0.5, -0.2], [1.0, 0.3]]}
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            t0 = time.perf_counter()
            r = await client.post(f"/v1/jobs/{job_id}/predict", json=body)
            lat.append(time.perf_counter() - t0)
            codes.append(r.status_code)

    await asyncio.gather(*(worker() for _ in range(conc)))
    return lat, codes


def summary(lat: list[float]) -> dict[str, float]:
    return {f"p{q}_ms": 1000 * percentile(lat, q / 100) for q in (50, 90, 99)} | {
        "max_ms": 1000 * max(lat)
    }


async def run(stack: Any, jobs: int, requests: int, conc: int) -> dict[str, Any]:
    headers = dict(stack.client.headers)
    limits = httpx.Limits(max_connections=max(jobs, conc))
    async with httpx.AsyncClient(
        base_url=stack.url, headers=headers, timeout=120, limits=limits
    ) as client:
        t0 = time.perf_counter()
        ids, post_lat, post_codes = await submit(client, jobs)
        posted_s = time.perf_counter() - t0
        pending: set[str] = set(filter(None, ids))
        final: dict[str, str] = {}
        while pending:
            await asyncio.sleep(1.0)
            for status in ("succeeded", "failed", "cancelled"):
                r = await client.get("/v1/jobs", params={"limit": 200, "status": status})
                final.update({j["id"]: status for j in r.json()["items"]})
            pending -= set(final)
        drained_s = time.perf_counter() - t0
        outcomes = {s: sum(v == s for v in final.values()) for s in set(final.values())}
        t1 = time.perf_counter()
        lat, codes = await infer(client, ids[0], requests, conc)
        infer_s = time.perf_counter() - t1
    return {
        "jobs": jobs,
        "post": summary(post_lat),
        "posted_in_s": posted_s,
        "all_terminal_in_s": drained_s,
        "outcomes": outcomes,
        "post_5xx": sum(c >= 500 for c in post_codes),
        "post_non_201": sum(c != 201 for c in post_codes),
        "requests": requests,
        "concurrency": conc,
        "predict": summary(lat),
        "predict_rps": requests / infer_s,
        "predict_5xx": sum(c >= 500 for c in codes),
        "predict_non_200": sum(c != 200 for c in codes),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    with running_stack("postgres", {**PRODUCTION_TIMING, **UNLIMITED}) as stack:
        res = asyncio.run(run(stack, args.jobs, args.requests, args.concurrency))
    print(
        f"{res['jobs']} concurrent POSTs in {res['posted_in_s']:.1f}s "
        f"(p50 {res['post']['p50_ms']:.0f} ms, p99 {res['post']['p99_ms']:.0f} ms), "
        f"5xx {res['post_5xx']}, non-201 {res['post_non_201']}; all terminal after "
        f"{res['all_terminal_in_s']:.1f}s: {res['outcomes']}"
    )
    print(
        f"{res['requests']} predicts at concurrency {res['concurrency']}: "
        f"{res['predict_rps']:.0f} req/s, p50 {res['predict']['p50_ms']:.1f} ms, "
        f"p99 {res['predict']['p99_ms']:.1f} ms, 5xx {res['predict_5xx']}, "
        f"non-200 {res['predict_non_200']}"
    )
    save("load", res)


if __name__ == "__main__":
    main()
