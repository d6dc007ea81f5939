"""Flows on moons and rings8: test NLL and wall time, ours against ``normflows``.

Both sides get the same data, the same minibatches (one seeded index stream), Adam at the
same learning rate, the same step budget, the same layer count and conditioner widths,
one thread, in this process, taking turns 50 steps at a time (``train_side_by_side``),
so a busy stretch of a shared machine slows both alike. The loop is the plain training
loop on both sides (no per-epoch validation), so the time is the model's. Ours is the
family's default model at that size (``FlowParams`` defaults: batch normalisation after
every realnvp/maf layer, soft-clamped log scales). normflows' planar and radial flows
have no inverse, so they cannot be trained by maximum likelihood there; ours (bisection
along w, a quadratic in r) are reported alone.

    python -m bench.flows                       # 5 seeds, ~15 minutes on one thread
    python -m bench.flows --steps 200 --seeds 1 --dry-run # a quick check

normflows runs twice for RealNVP: with its default ``scale_map="exp"`` and with its
``scale_map="sigmoid"`` (``PEERS``; ``--normflows`` picks). Every flow is built from its
own dataset's ``DataInfo`` (dimension, preprocessing).

The seed sets the initialisation and the batch stream of both sides. With 1,400 moons
training points the last Adam iterate's test NLL moves by ±0.1 from seed to seed, so the
summary compares means over the seeds (± their standard deviation) and counts the seeds
each side wins.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.common import OUT, machine
from models.data import DataInfo, Dataset, load
from models.flow.bijectors import Standardize
from models.flow.flow import Flow, FlowParams, nll_loss

Loss = Callable[[Tensor], Tensor]
CHUNK = 50  # steps each side trains in its turn (train_side_by_side)


# normflows' sides: the library name in the results, and the ``scale_map`` of its affine
# coupling. "exp" is its default (RealNVP's, unbounded); "sigmoid" is its documented
# Glow option, scale = sigmoid(s + 2), bounded in (0, 1). Its MAF
# (``MaskedAffineAutoregressive``, nflows' transform) has no such option: its scale is
# always sigmoid(s + 2) + 10⁻³, so a "sigmoid" MAF side would repeat the default one.
PEERS = {"normflows": "exp", "normflows-sigmoid": "sigmoid"}


def ours(
    transform: str, layers: int, hidden: list[int], data: Dataset
) -> tuple[nn.Module, Loss, Loss]:
    flow = Flow(FlowParams(transform=transform, layers=layers, hidden=hidden), data.info)
    assert isinstance(flow.pre, Standardize)
    flow.pre.shift.copy_(data.x_train.mean(0))
    flow.pre.scale.copy_(data.x_train.std(0))
    return flow, lambda x: nll_loss(flow, x), flow.log_density


def theirs(
    transform: str, layers: int, hidden: list[int], info: DataInfo, scale_map: str = "exp"
) -> tuple[nn.Module, Loss, Loss]:
    """normflows' flow of ``layers`` layers for data of ``info.input_shape``."""
    import normflows as nf

    d = math.prod(info.input_shape)
    d1 = d - d // 2  # the coupling's split ("channel"): the first ceil(d/2) features
    flows: list[nn.Module] = []
    for _ in range(layers):
        if transform == "realnvp":  # the net maps the first part to (shift, scale) of the rest
            net = nf.nets.MLP([d1, *hidden, 2 * (d - d1)], init_zeros=True)
            flows += [
                nf.flows.AffineCouplingBlock(net, scale_map=scale_map),
                nf.flows.Permute(d, mode="swap"),
            ]
        else:  # maf: MADE with len(hidden) masked hidden layers of width hidden[0]
            flows += [
                nf.flows.MaskedAffineAutoregressive(
                    d, hidden[0], num_blocks=len(hidden) - 1, use_residual_blocks=False
                ),
                nf.flows.Permute(d, mode="swap"),
            ]
    model = nf.NormalizingFlow(q0=nf.distributions.DiagGaussian(d), flows=flows)
    return model, model.forward_kld, model.log_prob


def train_side_by_side(
    sides: list[tuple[nn.Module, Loss]],
    x: Tensor,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    chunk: int = CHUNK,
) -> list[tuple[float, float, float]]:
    """Each side's (wall seconds, CPU seconds of this process, final train loss) of
    ``steps`` Adam steps, every side on the same seeded minibatches. The sides take turns,
    ``chunk`` steps at a time, and only a side's own chunks are timed: a slower or busier
    stretch of the machine falls on all of them alike, not on whichever happened to run
    then. The CPU time leaves out the time another process held the core."""
    gens = [torch.Generator().manual_seed(seed) for _ in sides]
    opts = [torch.optim.Adam(model.parameters(), lr=lr) for model, _ in sides]
    seconds = [0.0] * len(sides)
    cpu = [0.0] * len(sides)
    losses = [torch.tensor(math.nan)] * len(sides)
    for model, _ in sides:
        model.train()
    for start in range(0, steps, chunk):
        for i, ((_, loss_fn), gen, opt) in enumerate(zip(sides, gens, opts, strict=True)):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(min(chunk, steps - start)):
                idx = torch.randint(len(x), (batch,), generator=gen)
                loss = loss_fn(x[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            seconds[i] += time.perf_counter() - t0
            cpu[i] += time.process_time() - c0
            losses[i] = loss.detach()
    return [(s, c, float(v)) for s, c, v in zip(seconds, cpu, losses, strict=True)]


def test_nll(log_prob: Loss, model: nn.Module, x: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(-torch.cat([log_prob(xb) for xb in x.split(1000)]).mean())


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rows += run_seed(args, seed)
    return rows


def run_seed(args: argparse.Namespace, seed: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for dataset in args.datasets:
        data = load(dataset)
        x, x_test = data.x_train, data.x_test
        for transform in args.transforms:
            sides = ["deepzoo"]
            if transform == "realnvp":
                sides += args.normflows
            elif transform == "maf" and "normflows" in args.normflows:
                sides.append("normflows")  # its only scale map (PEERS)
            built = []
            for side in sides:
                torch.manual_seed(seed)
                if side == "deepzoo":
                    built.append(ours(transform, args.layers, args.hidden, data))
                else:
                    built.append(
                        theirs(transform, args.layers, args.hidden, data.info, PEERS[side])
                    )
            trained = train_side_by_side(
                [(model, loss_fn) for model, loss_fn, _ in built],
                x,
                args.steps,
                args.batch,
                args.lr,
                seed,
            )
            for side, (model, _, log_prob), (seconds, cpu, last) in zip(
                sides, built, trained, strict=True
            ):
                row = {
                    "dataset": dataset,
                    "seed": seed,
                    "transform": transform,
                    "library": side,
                    "params": sum(p.numel() for p in model.parameters()),
                    "test_nll": test_nll(log_prob, model, x_test),
                    "train_loss_last": last,
                    "seconds": seconds,
                    "ms_per_step": 1000 * seconds / args.steps,
                    "cpu_ms_per_step": 1000 * cpu / args.steps,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> str:
    """Markdown: per dataset and transform, each side's test NLL (mean ± sd and median over
    the seeds whose NLL is finite, and how many diverged to NaN), on how many seeds ours was
    the lower against each normflows side (a diverged run loses), and each side's wall and
    CPU ms/step. A normflows side that did not run for a row is left blank."""

    def ms(v: list[float], fmt: str) -> str:
        if not v:
            return ""
        ok = [x for x in v if math.isfinite(x)]
        if not ok:
            return "diverged"
        sd = statistics.stdev(ok) if len(ok) > 1 else 0.0
        text = f"{statistics.mean(ok):{fmt}} ± {sd:{fmt}} (median {statistics.median(ok):{fmt}})"
        return text + (f", {len(v) - len(ok)} NaN" if len(ok) < len(v) else "")

    def lower(a: float, b: float) -> bool:
        return math.isfinite(a) and (not math.isfinite(b) or a < b)

    peers = [lib for lib in PEERS if any(r["library"] == lib for r in rows)]
    names = {"normflows": "normflows", "normflows-sigmoid": "normflows sigmoid"}
    head = ["dataset", "transform", "seeds", "test NLL ours"]
    for lib in peers:
        head += [f"test NLL {names[lib]}", f"ours lower on ({names[lib]})"]
    for unit in ("ms/step", "CPU ms/step"):
        head += [f"{unit} ours", *(f"{unit} {names[lib]}" for lib in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = dict.fromkeys((r["dataset"], r["transform"]) for r in rows)
    for dataset, transform in keys:
        side = {
            lib: {
                r["seed"]: r
                for r in rows
                if (r["dataset"], r["transform"], r["library"]) == (dataset, transform, lib)
            }
            for lib in ("deepzoo", *peers)
        }
        ours_ = side["deepzoo"]
        cells = [
            dataset,
            transform,
            str(len(ours_)),
            ms([r["test_nll"] for r in ours_.values()], ".3f"),
        ]
        for lib in peers:
            theirs_ = side[lib]
            both = [s for s in ours_ if s in theirs_]
            wins = sum(lower(ours_[s]["test_nll"], theirs_[s]["test_nll"]) for s in both)
            nll = ms([r["test_nll"] for r in theirs_.values()], ".3f")
            if not theirs_ and lib == "normflows" and transform in ("planar", "radial"):
                nll = "no inverse"
            elif not theirs_ and lib == "normflows-sigmoid" and transform == "maf":
                nll = "as normflows (its MAF's scale is a sigmoid)"
            cells += [nll, f"{wins}/{len(both)}" if both else ""]
        for key, fmt in (("ms_per_step", ".1f"), ("cpu_ms_per_step", ".2f")):
            for lib in ("deepzoo", *peers):
                cells.append(ms([r.get(key, math.nan) for r in side[lib].values()], fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["moons", "rings8"])
    p.add_argument("--transforms", nargs="+", default=["realnvp", "maf", "planar", "radial"])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, default=5, help="how many seeds")
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … +seeds−1")
    p.add_argument(
        "--normflows",
        nargs="*",
        choices=list(PEERS),
        default=list(PEERS),
        help="normflows sides: its default scale map (exp) and its sigmoid option",
    )
    p.add_argument("--dry-run", action="store_true", help="do not write bench/out/")
    p.add_argument(
        "--report",
        type=Path,
        help="only summarise the result rows (JSON lines) in this file, e.g. a saved stdout",
    )
    args = p.parse_args()
    if args.report:
        lines = args.report.read_text().splitlines()
        print(summarise([json.loads(line) for line in lines if line.startswith("{")]))
        return
    torch.set_num_threads(1)
    rows = run(args)
    if not args.dry_run:
        OUT.mkdir(exist_ok=True)
        out = {"config": vars(args), "machine": machine(), "rows": rows}
        (OUT / "flows.json").write_text(json.dumps(out, indent=2))
        print(f"wrote {OUT / 'flows.json'}")
    print(summarise(rows))


if __name__ == "__main__":
    main()
