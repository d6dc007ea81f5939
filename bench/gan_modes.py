"""Mode collapse on the 2-D mixtures: each GAN loss (and the best configuration) on
``rings8`` and ``grid25``, several seeds, scored by the PacGAN/VEEGAN protocol (2,500
samples; high quality within 3σ of the nearest mode; a mode is covered when it is the
nearest mode of at least one high-quality sample), beside the published tables.

    python -m bench.gan_modes [--seeds 10] [--steps 3000] [--workers 1] [--sweep 2 | --best NAME]

The models are trained in process (``models.context.LocalContext``), no service: this
measures the family, not the API. Each run uses one thread; ``--workers`` runs seeds in
parallel processes. Results: a Markdown table on stdout and ``bench/out/gan_modes.json``.
A configuration with discriminator rejection sampling (``drs``) is scored on its DRS
samples (with the mean fraction of proposals kept) and, in a "<config>, plain samples"
row below it, on its generator's own samples from the same seed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"

# name -> GAN params (on top of the family's defaults); every run decays both learning
# rates linearly to 0 (``lr_decay``), which sharpens the modes at the end of training
RECIPE: dict[str, Any] = {"lr_decay": "linear"}
CONFIGS: dict[str, dict[str, Any]] = {
    "minimax": {"loss": "minimax"},
    "non_saturating": {"loss": "non_saturating"},
    "max_likelihood": {"loss": "max_likelihood"},
    "wasserstein clip": {"loss": "wasserstein", "wasserstein_constraint": "clip", "lr": 5e-4},
    "wasserstein gp": {"loss": "wasserstein", "wasserstein_constraint": "gp"},
    # a deeper D sharpens the modes but drops some; the R1 penalty keeps them (benchmarks.md)
    "non_saturating deep D + R1": {
        "loss": "non_saturating",
        "hidden_d": [256, 256, 256],
        "r1": 1.0,
    },
    # the same, then discriminator rejection sampling (Azadi et al. 2019): scored on the
    # DRS samples, and on G's own (same seed) in a "<config>, plain samples" row
    "non_saturating deep D + R1 + DRS": {
        "loss": "non_saturating",
        "hidden_d": [256, 256, 256],
        "r1": 1.0,
        "drs": True,
        "drs_steps": 10000,
    },
}
PLAIN = ", plain samples"  # the row of a DRS configuration's generator alone
WIDE = {"hidden_g": [256, 256, 256], "hidden_d": [256, 256, 256]}
# candidates for the best configuration (``--sweep``): scored on seeds the table never uses
SWEEP: dict[str, dict[str, Any]] = {
    "ns lr 5e-4": {"loss": "non_saturating", "lr": 5e-4},
    "ns wide": {"loss": "non_saturating", **WIDE},
    "ns wide lr 5e-4": {"loss": "non_saturating", "lr": 5e-4, **WIDE},
    "ns pack 2 wide": {"loss": "non_saturating", "pack": 2, **WIDE},
    "ns pack 4 wide": {"loss": "non_saturating", "pack": 4, **WIDE},
    "gp wide": {"loss": "wasserstein", **WIDE},
    "ns smooth 0.1 wide": {"loss": "non_saturating", "label_smoothing": 0.1, **WIDE},
    "ml wide lr 5e-4": {"loss": "max_likelihood", "lr": 5e-4, **WIDE},
}
BEST = "best"
SWEEP_SEED = 100

# (modes, high-quality %) from the papers, same protocol
PUBLISHED = {
    "rings8": [
        ("GAN (VEEGAN Table 1)", 1.0, 99.3),
        ("VEEGAN (VEEGAN Table 1)", 8.0, 52.9),
        ("PacGAN4 (PacGAN Table 1)", 7.8, 95.9),
    ],
    "grid25": [
        ("VEEGAN (VEEGAN Table 1)", 24.6, 40.0),
        ("PacGAN4 (PacGAN Table 1)", 24.8, 93.6),
    ],
}
GOAL = {"rings8": (8, 0.95), "grid25": (24.5, 0.90)}  # every seed: modes ≥, hq ≥


Job = tuple[str, str, int, int, int, dict[str, Any]]  # dataset, config, seed, steps, batch, extra


def run_one(args: Job) -> dict[str, Any]:
    """Train one GAN; score 2,500 samples drawn from a seed the training never saw."""
    import torch

    torch.set_num_threads(1)
    from models.context import LocalContext
    from models.data import load
    from models.data.builtin import mode_centres
    from models.family import Capability
    from models.gan.metrics import MIXTURE_STD, MODE_SAMPLES, mode_metrics
    from models.generative import OptionError, SampleOptions
    from models.registry import get_family

    dataset, config, seed, steps, batch, extra = args
    fam = get_family("gan")
    data = load(dataset)
    params = fam.params(**{**RECIPE, **(SWEEP.get(config) or CONFIGS.get(config) or {}), **extra})
    torch.manual_seed(seed)
    module = fam.build(params, data.info)
    ctx = LocalContext(steps=steps, batch_size=batch, seed=seed)
    t0 = time.perf_counter()
    fam.fit(module, data, params, ctx)
    sample = fam.capability(Capability.SAMPLE)
    opts = SampleOptions(n=MODE_SAMPLES, seed=10_000 + seed)
    centres = mode_centres(dataset)
    assert centres is not None
    try:
        x = sample(module, opts)  # DRS samples for a DRS configuration
        m: dict[str, Any] = mode_metrics(x.double().numpy(), centres, MIXTURE_STD[dataset])
    except OptionError as exc:  # DRS kept too few proposals: no sample set, a failed run
        m = {"modes": 0.0, "modes_strict": 0.0, "hq": 0.0, "js_modes": math.log(2)}
        m["drs_error"] = str(exc)
    if getattr(params, "drs", False):
        from models.gan.family import sample_plain

        plain = sample_plain(module, opts).double().numpy()
        m |= {
            f"plain_{k}": v for k, v in mode_metrics(plain, centres, MIXTURE_STD[dataset]).items()
        }
        m["drs_acceptance"] = ctx.metric("drs_acceptance")[-1][1]
    return {
        "dataset": dataset,
        "config": config,
        "seed": seed,
        "params": params.model_dump(),
        "seconds": time.perf_counter() - t0,
        **m,
    }


def plain_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each DRS run (it carries ``plain_*`` scores), a "<config>, plain samples" row
    scored on its generator's own samples."""
    return [
        {
            **{k: v for k, v in r.items() if not k.startswith("plain_")},
            **{k.removeprefix("plain_"): v for k, v in r.items() if k.startswith("plain_")},
            "config": r["config"] + PLAIN,
        }
        for r in rows
        if "plain_modes" in r
    ]


def summarise(rows: list[dict[str, Any]], configs: list[str]) -> str:
    """Markdown: per dataset and config, mean ± sd and the worst seed; a DRS config's
    generator alone in a row of its own below it."""

    def ms(v: list[float]) -> str:
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{statistics.mean(v):.1f} ± {sd:.1f}"

    rows = rows + plain_rows(rows)
    configs = [name for config in configs for name in (config, config + PLAIN)]

    lines = []
    for dataset in GOAL:
        sub = [r for r in rows if r["dataset"] == dataset]
        if not sub:
            continue
        k = 8 if dataset == "rings8" else 25
        need_modes, need_hq = GOAL[dataset]
        lines += [
            f"\n**{dataset}** ({k} modes; goal: ≥ {need_modes} modes at ≥ {need_hq:.0%} "
            "high quality in every seed)\n",
            "| configuration | seeds | modes (mean ± sd) | worst | high quality % (mean ± sd)"
            " | worst | seeds meeting the goal |",
            "|---|---|---|---|---|---|---|",
        ]
        for config in configs:
            rs = [r for r in sub if r["config"] == config]
            if not rs:
                continue
            modes = [r["modes"] for r in rs]
            hq = [100 * r["hq"] for r in rs]
            ok = sum(r["modes"] >= need_modes and r["hq"] >= need_hq for r in rs)
            name = f"**{config}**" if config.startswith(BEST) else config
            if not config.endswith(PLAIN) and all("drs_acceptance" in r for r in rs):
                accepted = statistics.mean(100 * r["drs_acceptance"] for r in rs)
                name += f" (DRS keeps {accepted:.1f} %)"
            lines.append(
                f"| {name} | {len(rs)} | {ms(modes)} | {min(modes):.0f} | {ms(hq)} "
                f"| {min(hq):.1f} | {ok}/{len(rs)} |"
            )
        for name, modes_pub, hq_pub in PUBLISHED[dataset]:
            lines.append(f"| {name} | published | {modes_pub} | | {hq_pub} | | |")
    return "\n".join(lines)


def run_all(jobs: list[Any], workers: int, log: Path) -> list[dict[str, Any]]:
    """Run the jobs, appending each result to ``log`` (JSON lines) as it finishes."""
    rows = []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        done: Iterator[dict[str, Any]]
        if pool:
            done = (fut.result() for fut in as_completed([pool.submit(run_one, j) for j in jobs]))
        else:
            done = map(run_one, jobs)
        with log.open("a") as f:
            for row in done:
                rows.append(row)
                f.write(json.dumps(row) + "\n")
                f.flush()
    finally:
        if pool:
            pool.shutdown()
    return rows


def pick_best(rows: list[dict[str, Any]]) -> str:
    """The candidate whose worst dataset is best: most seeds meeting the goal, then the
    highest minimum high-quality fraction with all modes."""

    def score(config: str) -> tuple[float, float]:
        per = []
        for dataset, (need_modes, need_hq) in GOAL.items():
            rs = [r for r in rows if r["config"] == config and r["dataset"] == dataset]
            if not rs:
                continue
            met = sum(r["modes"] >= need_modes and r["hq"] >= need_hq for r in rs) / len(rs)
            per.append((met, min(r["hq"] if r["modes"] >= need_modes else 0 for r in rs)))
        return min(m for m, _ in per), min(h for _, h in per)

    return max({r["config"] for r in rows}, key=score)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … +seeds−1")
    ap.add_argument("--steps", type=int, default=3000, help="generator steps per run")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=1, help="parallel processes")
    ap.add_argument("--datasets", nargs="+", default=list(GOAL))
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--sweep", type=int, default=0, help="seeds per best-candidate (0: none)")
    ap.add_argument("--best", choices=list(SWEEP), help="the best configuration, unswept")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--report", action="store_true", help="only summarise --out's runs so far")
    a = ap.parse_args()
    if a.report:
        rows = [json.loads(line) for line in (a.out / "gan_modes.jsonl").read_text().splitlines()]
        print(summarise(rows, list(dict.fromkeys(r["config"] for r in rows))))
        return
    a.out.mkdir(parents=True, exist_ok=True)
    log = a.out / "gan_modes.jsonl"
    t0 = time.perf_counter()
    best = a.best
    if a.sweep:
        sweep: list[Job] = [
            (d, c, SWEEP_SEED + s, a.steps, a.batch_size, {})
            for s in range(a.sweep)
            for d in a.datasets
            for c in SWEEP
        ]
        swept = run_all(sweep, a.workers, a.out / "gan_sweep.jsonl")
        best = pick_best(swept)
        print(f"sweep over {len(sweep)} runs: best = {best!r} {SWEEP[best]}", flush=True)
    configs = list(a.configs) + ([best] if best else [])
    print(f"configurations: {configs}", flush=True)
    jobs: list[Job] = [
        (d, c, s, a.steps, a.batch_size, {})
        for s in range(a.first_seed, a.first_seed + a.seeds)
        for d in a.datasets
        for c in configs
    ]
    rows = run_all(jobs, a.workers, log)
    for r in rows:
        if r["config"] == best:
            r["config"] = f"{BEST}: {best}"
    meta = {"steps": a.steps, "batch_size": a.batch_size, "seeds": a.seeds, "best": best}
    meta["wall_seconds"] = time.perf_counter() - t0
    (a.out / "gan_modes.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    print(summarise(rows, [*a.configs, f"{BEST}: {best}"] if best else list(a.configs)))
    print(f"\n{len(rows)} runs, {meta['wall_seconds']:.0f} s wall; {a.out}")


if __name__ == "__main__":
    main()
