"""What several end-to-end tests share: the reference training job and the metric-curve check."""

from __future__ import annotations

from collections import Counter

from tests.stack import Stack

# MC dropout on sine_gap to quality: long enough to be cancelled, resumed or killed midway
SINE = {
    "model": "mc_dropout",
    "dataset": "sine_gap",
    "params": {"hidden": [64, 64], "dropout": 0.1, "heteroscedastic": True},
    "optimizer": {"name": "adam", "lr": 0.001},
    "train": {"epochs": 200, "batch_size": 64, "seed": 0},
}


def assert_clean_curve(stack: Stack, job_id: str, name: str, last: int) -> None:
    """Every step 1..last exactly once: no gap, no duplicate."""
    rows = stack.client.get(f"/v1/jobs/{job_id}/metrics", params={"name": name}).json()["metrics"]
    steps = Counter(r["step"] for r in rows)
    assert all(c == 1 for c in steps.values()), f"duplicated steps: {steps.most_common(3)}"
    assert sorted(steps) == list(range(1, last + 1)), f"gaps in {sorted(steps)}"
