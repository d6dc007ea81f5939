"""Predict latency: 100 MC-dropout passes over 100 inputs, warm, over HTTP (p50, p99)
against the bare batched forward in one process. Goal: HTTP p50 <= 2x the bare forward.

    python -m bench.predict_latency [--requests 200]

The model is an ``mc_dropout`` job trained by the service on ``sine_gap``; the bare
side loads the same checkpoint (downloaded from the API) and calls the family's
``predict`` directly, which is the forward the service runs.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from bench.common import percentile, running_stack, save
from bench.service_overhead import PRODUCTION_TIMING
from models.checkpoint import load_state
from models.data import DataInfo
from models.family import Capability
from models.registry import get_family

SPEC = {
    "model": "mc_dropout",
    "dataset": "sine_gap",
    "params": {"hidden": [64, 64, 64], "dropout": 0.1},
    "optimizer": {"name": "adam", "lr": 0.003},
    "train": {"epochs": 20, "seed": 0},
}
T, N = 100, 100


def bare_forward(job: dict[str, Any], blob: bytes, x: torch.Tensor, n: int) -> list[float]:
    family = get_family(job["model"])
    info = DataInfo(
        name="sine_gap",
        task="regression",
        input_shape=(1,),
        target_dim=1,
        n_classes=None,
        n_train=400,
    )
    module = family.build(family.params(**job["spec"]["params"]), info)
    module.load_state_dict(load_state(blob)["model"])
    module.eval()
    predict = family.capability(Capability.PREDICT)
    times = []
    with torch.inference_mode():
        for _ in range(n + 10):
            t0 = time.perf_counter()
            predict(module, x, T)
            times.append(time.perf_counter() - t0)
    return times[10:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    x = np.linspace(-3, 3, N).reshape(N, 1)
    body = {"inputs": x.tolist(), "mc_samples": T}
    with running_stack("embedded", PRODUCTION_TIMING) as stack:
        job = stack.post_job(SPEC)
        job = stack.wait_status(job["id"], {"succeeded"}, timeout=300)
        blob = stack.client.get(f"/v1/jobs/{job['id']}/checkpoints/{job['checkpoint']}").content
        url = f"/v1/jobs/{job['id']}/predict"
        for _ in range(10):  # warm: the checkpoint is loaded into the API's cache
            assert stack.client.post(url, json=body).status_code == 200
        http = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            r = stack.client.post(url, json=body)
            http.append(time.perf_counter() - t0)
            assert r.status_code == 200
        bare = bare_forward(job, blob, torch.tensor(x, dtype=torch.float32), args.requests)
    row = {
        "http_p50_ms": 1000 * percentile(http, 0.5),
        "http_p99_ms": 1000 * percentile(http, 0.99),
        "bare_p50_ms": 1000 * percentile(bare, 0.5),
        "bare_p99_ms": 1000 * percentile(bare, 0.99),
    }
    row["ratio_p50"] = row["http_p50_ms"] / row["bare_p50_ms"]
    print(
        f"predict {T} passes x {N} inputs: HTTP p50 {row['http_p50_ms']:.2f} ms, p99 "
        f"{row['http_p99_ms']:.2f} ms; bare forward p50 {row['bare_p50_ms']:.2f} ms, p99 "
        f"{row['bare_p99_ms']:.2f} ms; ratio p50 {row['ratio_p50']:.2f}x (goal <= 2x)"
    )
    save("predict_latency", {"mc_samples": T, "inputs": N, "requests": args.requests, **row})


if __name__ == "__main__":
    main()
