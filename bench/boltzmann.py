"""``boltzmann``: the block Gibbs scan against the unit-by-unit one it replaced, and the AIS
log Z against the plain importance sampling it replaced (issue 17).

A machine trained on ``--dataset`` (``mnist5k_bin``, 784 units; pcd, 100 chains, one
sweep, Adam 0.01, batch 100, ``--epochs``, seed 0), one torch thread. Gibbs: milliseconds
per sweep of n chains for the unit-by-unit systematic scan (the family's ``gibbs``
before: one field mat-vec per unit) and ``gibbs_sweeps`` (blocks of 32 resolved as fixed
points), the same seed, checked to give the same states. log Z: AIS (base model at the
training marginals; runs × temperatures) against importance sampling from independent
Bernoullis at those marginals, and the test NLL each gives.

    python -m bench.boltzmann --sweeps 10
    python -m bench.boltzmann --dataset digits_bin --epochs 30 --ais 100x1000 100x10000

Writes bench/out/boltzmann_<dataset>.json.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import torch
from torch import Tensor

from bench.common import save
from models.boltzmann import FAMILY, BoltzmannMachine, BoltzmannParams, gibbs_sweeps, log_z_ais
from models.context import LocalContext
from models.data import load
from models.optim import OptimizerSpec


def unit_by_unit(u: Tensor, W: Tensor, b: Tensor, sweeps: int, gen: torch.Generator) -> Tensor:
    """The scan before: unit i = 1..D set to [ν_i < σ(b_i + u W_i)], a mat-vec per unit."""
    u = u.clone()
    for _ in range(sweeps):
        nu = torch.rand(u.shape, generator=gen, dtype=u.dtype)
        for i in range(u.shape[1]):
            u[:, i] = (nu[:, i] < torch.sigmoid(u @ W[:, i] + b[i])).to(u.dtype)
    return u


def importance(module: BoltzmannMachine, k: int) -> tuple[float, float]:
    """log Ẑ and its standard error from k draws of independent Bernoullis at the marginals."""
    q = torch.sigmoid(module.base_bias.double())
    x = (torch.rand(k, module.d, generator=torch.Generator().manual_seed(0)) < q).double()
    w = -module.energy(x) - (x * q.log() + (1 - x) * (-q).log1p()).sum(1)
    r = (w - w.max()).exp()
    return float(torch.logsumexp(w, 0)) - math.log(k), float(r.std() / (math.sqrt(k) * r.mean()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist5k_bin")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--chains", type=int, nargs="+", default=[16, 100, 1000])
    ap.add_argument("--sweeps", type=int, default=20)
    ap.add_argument("--ais", nargs="+", default=["100x100", "100x1000"], help="runs x betas")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load(args.dataset)
    params = BoltzmannParams(sampler="pcd", chains=100, ais_runs=2, ais_betas=2)
    torch.manual_seed(0)
    module = FAMILY.build(params, data.info)
    assert isinstance(module, BoltzmannMachine)
    ctx = LocalContext(epochs=args.epochs, batch_size=100, optimizer=OptimizerSpec(lr=0.01))
    start = time.perf_counter()
    FAMILY.fit(module, data, params, ctx)
    fit_s = time.perf_counter() - start
    print(f"fit: {args.epochs} epochs in {fit_s:.1f} s")
    W, b = module.W.detach(), module.b.detach()

    gibbs: list[dict[str, Any]] = []
    for n in args.chains:
        u = (torch.rand(n, module.d, generator=torch.Generator().manual_seed(1)) < 0.5).float()
        row: dict[str, Any] = {"chains": n, "sweeps": args.sweeps}
        states = []
        for name, fn in (("unit_by_unit", unit_by_unit), ("block", gibbs_sweeps)):
            start = time.perf_counter()
            states.append(fn(u, W, b, args.sweeps, torch.Generator().manual_seed(2)))
            row[f"{name}_ms_per_sweep"] = 1000 * (time.perf_counter() - start) / args.sweeps
        row["same_states"] = bool(torch.equal(*states))
        row["speedup"] = row["unit_by_unit_ms_per_sweep"] / row["block_ms_per_sweep"]
        gibbs.append(row)
        print(
            f"{n} chains: unit by unit {row['unit_by_unit_ms_per_sweep']:.1f} ms/sweep, "
            f"block {row['block_ms_per_sweep']:.1f} ({row['speedup']:.1f}×), "
            f"same states: {row['same_states']}"
        )

    estimates: list[dict[str, Any]] = []
    with torch.no_grad():
        energy = float(module.energy(module.units(data.x_test).double()).mean())
        for k in (1000, 100_000):
            log_z, se = importance(module, k)
            estimates.append({"method": f"IS {k}", "log_z": log_z, "stderr": se})
        for spec in args.ais:
            runs, betas = map(int, spec.split("x"))
            start = time.perf_counter()
            gen = torch.Generator().manual_seed(0)
            log_z, se = log_z_ais(W, b, module.base_bias, runs, betas, gen)
            seconds = time.perf_counter() - start
            estimates.append(
                {"method": f"AIS {spec}", "log_z": log_z, "stderr": se, "seconds": seconds}
            )
    for e in estimates:
        e["test_nll"] = energy + e["log_z"]
        print(
            f"{e['method']}: log Z {e['log_z']:.2f} ± {e['stderr']:.2f}, test NLL "
            f"{e['test_nll']:.2f}" + (f" ({e['seconds']:.1f} s)" if "seconds" in e else "")
        )
    result = {"epochs": args.epochs, "fit_s": fit_s, "gibbs": gibbs, "log_z": estimates}
    save(f"boltzmann_{args.dataset}", result)


if __name__ == "__main__":
    main()
