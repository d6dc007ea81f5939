"""Deep RL against Stable-Baselines3, side by side in one run (issue 15, item 8).

    .venv/bin/python -m bench.rl                          # everything, 5 seeds
    .venv/bin/python -m bench.rl --parts dqn --seeds 0 1  # one part
    .venv/bin/python -m bench.rl --quick                  # a smoke run (tiny budgets)

Parts:

- ``dqn``: CartPole-v1, our ``dqn`` and SB3's ``DQN`` at rl-baselines3-zoo's hyperparameters
  (``hyperparams/dqn.yml``: lr 2.3e-3, batch 64, buffer 100k, learning starts 1000, γ 0.99,
  target update every 10 steps, train every 256 steps with 128 gradient steps, ε to 0.04
  over 16 % of 50k steps, net [256, 256]). Both are evaluated every ``EVAL_EVERY``
  environment steps on the same ``EVAL_EPISODES`` fixed-seed episodes with the greedy
  policy (our ``models.rl.evaluate``, SB3's ``predict(deterministic=True)``) and stop at the
  first evaluation whose mean reaches 475: the environment steps and the wall time to that
  point (evaluation included on both sides) are the figures.
- ``ddpg``: Pendulum-v1, 20k steps, our ``ddpg`` and SB3's ``DDPG`` at the zoo's settings
  (γ 0.98, buffer 200k, learning starts 10k, Gaussian noise σ 0.1, lr 1e-3, net [400, 300],
  batch 256, τ 0.005); the final greedy evaluation mean and the wall time.
- ``reinforce``: CartPole-v1, ours only (SB3 has no REINFORCE): steps to an evaluation mean
  of 475 within 200k.
- ``ablation``: our DQN on CartPole with the notes' two fixes switched off (no replay, no
  target network, neither), evaluation curves in one PNG (bench/out/rl_ablation.png).

Fairness: one torch thread for both, both warmed by a short run first, the same evaluation
protocol, seeds interleaved (ours then SB3's for each seed), wall time as a caller of each
library's ``learn``/``fit`` sees it. Writes bench/out/rl.json.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench.common import OUT, machine, save
from models.context import LocalContext
from models.data import Environment, load_data
from models.optim import OptimizerSpec
from models.registry import get_family
from models.rl import evaluate

EVAL_EVERY = 1000
EVAL_EPISODES = 10
SOLVED = 475.0

# our settings, mirroring the zoo's where the two share a meaning
DQN_CARTPOLE: dict[str, Any] = {
    "hidden": [256, 256],
    "gamma": 0.99,
    "buffer_size": 100_000,
    "learning_starts": 1000,
    "train_freq": 256,
    "gradient_steps": 128,
    "target_update": 10,
    "tau": 1.0,
    "eps_start": 1.0,
    "eps_end": 0.04,
    "eps_fraction": 0.16,
    "loss": "huber",
    "max_grad_norm": 10.0,
    "eval_every": EVAL_EVERY,
    "eval_episodes": EVAL_EPISODES,
}
DQN_LR, DQN_BATCH, DQN_STEPS = 2.3e-3, 64, 50_000

SB3_DQN_CARTPOLE: dict[str, Any] = {
    "learning_rate": 2.3e-3,
    "batch_size": 64,
    "buffer_size": 100_000,
    "learning_starts": 1000,
    "gamma": 0.99,
    "target_update_interval": 10,
    "train_freq": 256,
    "gradient_steps": 128,
    "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04,
    "policy_kwargs": {"net_arch": [256, 256]},
}


class UntilSolved(LocalContext):
    """A LocalContext that asks the family to stop once an evaluation mean reached
    ``threshold`` (None: never), remembering the step it was logged at."""

    def __init__(self, *, threshold: float | None, metric: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold, self.metric_name = threshold, metric
        self.solved_at: int | None = None

    def log(self, step: int, **metrics: float) -> None:
        super().log(step, **metrics)
        value = metrics.get(self.metric_name)
        if (
            self.threshold is not None
            and self.solved_at is None
            and value is not None
            and value >= self.threshold
        ):
            self.solved_at = step

    def should_stop(self) -> bool:
        return self.solved_at is not None


def ours(
    model: str,
    env: str,
    params: dict[str, Any],
    *,
    steps: int,
    seed: int,
    lr: float,
    batch_size: int,
    threshold: float | None,
    metric: str = "eval_return_mean",
) -> dict[str, Any]:
    """Fit one of our families in process; steps to the threshold, wall time, the curve."""
    family = get_family(model)
    data = load_data(env)
    p = family.params(**params)
    torch.manual_seed(seed)
    module = family.build(p, data.info)
    ctx = UntilSolved(
        threshold=threshold,
        metric=metric,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        optimizer=OptimizerSpec(name="adam", lr=lr),
    )
    start = time.perf_counter()
    family.fit(module, data, p, ctx)
    wall = time.perf_counter() - start
    curve = ctx.metric(metric)
    return {
        "steps_to_solve": ctx.solved_at,
        "wall_seconds": wall,
        "curve": curve,
        "final_eval": curve[-1][1] if curve else None,
    }


def _sb3_eval(model: Any, data: Environment) -> float:
    def policy(obs: torch.Tensor) -> torch.Tensor:
        action, _ = model.predict(obs.numpy(), deterministic=True)
        return torch.as_tensor(action)

    returns, _ = evaluate(policy, data, EVAL_EPISODES)
    return statistics.mean(returns)


def sb3(
    algo: str,
    env: str,
    kwargs: dict[str, Any],
    *,
    steps: int,
    seed: int,
    threshold: float | None,
) -> dict[str, Any]:
    """SB3's ``learn`` with the same evaluation protocol as ours, in a callback."""
    import gymnasium as gym
    from stable_baselines3 import DDPG, DQN
    from stable_baselines3.common.callbacks import BaseCallback

    data = load_data(env)
    assert isinstance(data, Environment)
    curve: list[tuple[int, float]] = []
    solved: list[int] = []

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % EVAL_EVERY != 0:
                return True
            mean = _sb3_eval(self.model, data)
            curve.append((self.num_timesteps, mean))
            if threshold is not None and mean >= threshold:
                solved.append(self.num_timesteps)
                return False
            return True

    extra: dict[str, Any] = {}
    if algo == "ddpg":
        from stable_baselines3.common.noise import NormalActionNoise

        n = data.action.dim
        extra["action_noise"] = NormalActionNoise(np.zeros(n), kwargs["noise_std"] * np.ones(n))
        kwargs = {k: v for k, v in kwargs.items() if k != "noise_std"}
    cls = {"dqn": DQN, "ddpg": DDPG}[algo]
    start = time.perf_counter()
    model = cls("MlpPolicy", gym.make(data.env_id), seed=seed, verbose=0, **kwargs, **extra)
    model.learn(total_timesteps=steps, callback=Evaluate())
    wall = time.perf_counter() - start
    if not curve or curve[-1][0] != model.num_timesteps:
        curve.append((model.num_timesteps, _sb3_eval(model, data)))
    return {
        "steps_to_solve": solved[0] if solved else None,
        "wall_seconds": wall,
        "curve": curve,
        "final_eval": curve[-1][1],
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def part_dqn(seeds: list[int], quick: bool) -> dict[str, Any]:
    steps = 2000 if quick else DQN_STEPS
    run_ours: Callable[[int], dict[str, Any]] = lambda seed: ours(  # noqa: E731
        "dqn", "cartpole", DQN_CARTPOLE, steps=steps, seed=seed, lr=DQN_LR,
        batch_size=DQN_BATCH, threshold=SOLVED,
    )  # fmt: skip
    run_sb3: Callable[[int], dict[str, Any]] = lambda seed: sb3(  # noqa: E731
        "dqn", "cartpole", SB3_DQN_CARTPOLE, steps=steps, seed=seed, threshold=SOLVED
    )
    return _side_by_side("dqn CartPole-v1", run_ours, run_sb3, seeds, quick)


DDPG_PENDULUM: dict[str, Any] = {}  # filled when the family lands (see part_ddpg)


def _side_by_side(
    title: str,
    run_ours: Callable[[int], dict[str, Any]],
    run_sb3: Callable[[int], dict[str, Any]],
    seeds: list[int],
    quick: bool,
) -> dict[str, Any]:
    # warm both (imports, first allocations, gymnasium registration) on an unreported seed
    run_ours(10_000)
    run_sb3(10_000)
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        a, b = run_ours(seed), run_sb3(seed)
        rows.append({"seed": seed, "ours": a, "sb3": b})
        print(
            f"{title} seed {seed}: ours {a['steps_to_solve']} steps {a['wall_seconds']:.1f} s "
            f"(final eval {a['final_eval']}), SB3 {b['steps_to_solve']} steps "
            f"{b['wall_seconds']:.1f} s (final eval {b['final_eval']})",
            flush=True,
        )
    ours_wall = _median([r["ours"]["wall_seconds"] for r in rows])
    sb3_wall = _median([r["sb3"]["wall_seconds"] for r in rows])
    summary = {
        "median_wall_ours": ours_wall,
        "median_wall_sb3": sb3_wall,
        "wall_ratio": ours_wall / sb3_wall,
        "final_eval_ours": [r["ours"]["final_eval"] for r in rows],
        "final_eval_sb3": [r["sb3"]["final_eval"] for r in rows],
        "steps_ours": [r["ours"]["steps_to_solve"] for r in rows],
        "steps_sb3": [r["sb3"]["steps_to_solve"] for r in rows],
    }
    print(title, summary, flush=True)
    return {"rows": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--parts", nargs="+", default=["dqn", "ddpg", "reinforce", "ablation"],
        choices=["dqn", "ddpg", "reinforce", "ablation"],
    )  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    parser.add_argument("--tag", default="", help="bench/out/rl_TAG.json (parallel runs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = {"dqn": part_dqn}
    result: dict[str, Any] = {"seeds": args.seeds, "quick": args.quick, "machine": machine()}
    for name in args.parts:
        if name in parts:
            result[name] = parts[name](args.seeds, args.quick)
    save("rl" + ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else ""), result)
    print("written to", OUT)


if __name__ == "__main__":
    main()
