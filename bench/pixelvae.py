"""PixelVAE's KL against the size of its decoder (issue 19): "PixelCNN is too powerful".

For each ``decoder_layers`` (0: a factorised decoder, p(x|z) = Π p(x_k | z); 1: a gated
layer that sees one row up; 5: the whole past of an 8 × 8 image) and seed, ``pixelvae``'s
own ``fit`` in process (``LocalContext``, one torch thread, Adam 1e-3, batch 64), the other
settings those of ``bench.likelihoods.CONFIGS``; per epoch the validation KL and active
units, at the end the test ELBO, KL, active units, the importance-weighted bound
(``k_eval``) and the sampling time per image. The paper's claim to check: the KL stays
above zero only with a small decoder; the bound, against ``pixelcnn``'s exact NLL in
docs/benchmarks.md's likelihood table.

    python -m bench.pixelvae                                  # layers 0 1 5, seeds 0 1 2
    python -m bench.pixelvae --layers 1 --seeds 0 --tag l1s0  # one cell
    python -m bench.pixelvae --dataset mnist5k_bin --layers 0 1 3 --seeds 0 --epochs 20 --k-eval 10

Writes bench/out/pixelvae[_TAG].json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from typing import Any

import torch

from bench.common import save
from bench.likelihoods import CONFIGS, fit_run
from models.data import load


def one(
    dataset: str, layers: int, seed: int, epochs: int | None = None, k_eval: int | None = None
) -> dict[str, Any]:
    """One fit at ``CONFIGS``' settings but ``layers`` (and ``epochs``, ``k_eval`` if given)."""
    base = CONFIGS[dataset]["pixelvae"]
    params = {**base.params, "decoder_layers": layers}
    if k_eval is not None:
        params["k_eval"] = k_eval
    run = dataclasses.replace(base, params=params, epochs=epochs or base.epochs)
    module, ctx, seconds = fit_run("pixelvae", load(dataset), run, seed)
    final = ctx.history[-1][1]
    return {
        "layers": layers,
        "seed": seed,
        "train_cpu_seconds": seconds,
        "parameters": sum(p.numel() for p in module.parameters()),
        "best_epoch": min(ctx.metric("val_loss"), key=lambda sv: sv[1])[0],
        "val_kl": [v for _, v in ctx.metric("val_kl")],
        "active_units": [v for _, v in ctx.metric("active_units")],
        **{k: final[k] for k in final},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits_bin", choices=sorted(CONFIGS))
    parser.add_argument("--layers", nargs="+", type=int, default=[0, 1, 5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="instead of CONFIGS' (a cheaper sweep)")
    parser.add_argument("--k-eval", type=int, help="the test bound's samples instead of CONFIGS'")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for layers in args.layers:
        for seed in args.seeds:
            row = one(args.dataset, layers, seed, args.epochs, args.k_eval)
            rows.append(row)
            print(
                f"layers {layers} seed {seed}: test bound {row['test_iwae_nll']:.2f} nats, "
                f"KL {row['test_kl']:.2f}, active {row['test_active_units']:.0f}, "
                f"ELBO {row['test_elbo']:.2f}, best epoch {row['best_epoch']}, "
                f"{row['train_cpu_seconds']:.0f} CPU s",
                flush=True,
            )
    for layers in args.layers:
        rs = [r for r in rows if r["layers"] == layers]

        def mean(k: str, rs: list[dict[str, Any]] = rs) -> float:
            return statistics.mean(r[k] for r in rs)

        print(
            f"| {layers} | {mean('test_iwae_nll'):.2f} | {mean('test_elbo'):.2f} | "
            f"{mean('test_kl'):.2f} | {mean('test_active_units'):.1f} | "
            f"{mean('sample_seconds_per_image') * 1000:.1f} ms |"
        )
    config = dataclasses.asdict(CONFIGS[args.dataset]["pixelvae"])
    save("pixelvae" + (f"_{args.tag}" if args.tag else ""), {"config": config, "rows": rows})


if __name__ == "__main__":
    main()
