"""The shared loop's bookkeeping: ``Budget`` in either unit, and ``final_test``'s step."""

from __future__ import annotations

import torch
from torch import nn

from models.context import LocalContext
from models.loop import (
    Budget,
    batch_count,
    denormals_flushed,
    final_test,
    flush_denormals,
    minibatches,
)


def test_budget_counts_in_the_jobs_unit() -> None:
    by_epochs, by_steps = Budget(epochs=3, steps=None), Budget(epochs=None, steps=40)
    assert (by_epochs.total, by_epochs.final_step, by_steps.total) == (3, 3, 40)
    assert by_epochs.count(2, 17) == 2 and by_steps.count(2, 17) == 17
    assert not by_epochs.finished(2, 99) and by_epochs.finished(3, 0)
    assert not by_steps.finished(9, 39) and by_steps.finished(0, 40)
    assert by_epochs.total_steps(7) == 21 and by_steps.total_steps(7) == 40
    assert by_epochs.steps_left(10**6) and by_steps.steps_left(39)
    assert not by_steps.steps_left(40)
    assert Budget.of(LocalContext(steps=5)) == Budget(epochs=None, steps=5)


def test_batch_count_matches_minibatches() -> None:
    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 7, 8, 9, 17, 64, 65):
        for size in (1, 4, 8, 64):
            assert batch_count(n, size) == len(minibatches(n, size, g)), (n, size)


def test_final_test_logs_at_the_last_unit_in_eval_mode_without_grad() -> None:
    module = nn.Linear(2, 1)
    seen: list[tuple[bool, bool]] = []

    def metrics() -> dict[str, float]:
        seen.append((module.training, torch.is_grad_enabled()))
        return {"test_loss": 1.5}

    for ctx, step in ((LocalContext(epochs=4), 4), (LocalContext(steps=30), 30)):
        module.train()
        final_test(module, ctx, metrics)
        assert ctx.history == [(step, {"test_loss": 1.5})]
    assert seen == [(False, False), (False, False)]


def test_final_test_scores_the_best_checkpoint_not_the_final_weights() -> None:
    """Inference serves the best checkpoint by validation; the test numbers (the
    leaderboard's) describe it, and without a best they describe the final weights."""
    module = nn.Linear(1, 1, bias=False)

    def metrics() -> dict[str, float]:
        return {"test_w": float(module.weight)}

    ctx = LocalContext(epochs=3)
    with torch.no_grad():
        module.weight.fill_(1.0)
    ctx.checkpoint(1, {"model": {"weight": torch.full((1, 1), 1.0)}}, best=True)
    ctx.checkpoint(2, {"model": {"weight": torch.full((1, 1), 2.0)}})
    with torch.no_grad():
        module.weight.fill_(3.0)  # the final weights, worse on validation than epoch 1's
    final_test(module, ctx, metrics)
    assert ctx.metric("test_w") == [(3, 1.0)]
    assert float(module.weight) == 1.0  # and the module is left holding them

    # a resume whose run never improved: the best of the run before it, handed over
    resumed = LocalContext(epochs=3, best={"model": {"weight": torch.full((1, 1), 5.0)}})
    final_test(module, resumed, metrics)
    assert resumed.metric("test_w") == [(3, 5.0)]

    never = LocalContext(epochs=3)  # nothing offered as best: the final weights
    final_test(module, never, metrics)
    assert never.metric("test_w") == [(3, 5.0)]


def test_flush_denormals_sets_and_restores_the_mode() -> None:
    before = denormals_flushed()
    tiny = torch.full((1,), 1e-30)
    for on in (True, False):
        with flush_denormals(on):
            assert denormals_flushed() == on
            assert (float((tiny * 1e-10).item()) == 0.0) == on  # 1e-40 is denormal in fp32
        assert denormals_flushed() == before
