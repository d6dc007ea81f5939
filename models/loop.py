"""The minibatch training loop every predictive family shares, and its bookkeeping.

A job is long ``ctx.epochs`` epochs or ``ctx.steps`` optimizer steps (exactly one is
set); ``Budget`` answers in that unit (the step a metric is logged at, the total a
progress report names). ``train_epochs`` runs shuffled minibatches (``minibatches``)
with the runner's ``ctx``: it logs, reports progress, checkpoints and resumes; a
family's ``fit`` gives it a loss and a validation function. ``final_test`` is the
tail of every such ``fit``: the held-out numbers once, for the best weights by validation
(the ones inference serves).

Checkpoint state: {"model": module.state_dict(), "optimizer": opt.state_dict(),
"epoch": epochs begun and ended (a stopped epoch counts), "step": optimizer steps,
"best_val_loss": 0-d float64 tensor}. Metrics, progress and checkpoints are keyed by
the job's unit: the epoch number with ctx.epochs, the optimizer step with ctx.steps.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from models.family import Context, Diverged

LossFn = Callable[[Tensor, Tensor], Tensor]  # (x batch, y batch) -> scalar training loss
EvalFn = Callable[[], dict[str, float]]  # validation metrics, must include "val_loss"


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero (FTZ/DAZ; torch has no getter):
    1e-30 · 1e-10 is a denormal float32, 0 when flushed."""
    return torch.full((1,), 1e-30).mul_(1e-10).item() == 0.0


@contextmanager
def flush_denormals(on: bool = True) -> Iterator[None]:
    """Denormal floats flushed to zero (``on``) or kept in this thread, as before after.

    Training sets it (``DEEPZOO_FLUSH_DENORMAL``): Adam's second moment of a unit whose
    gradient is 0 (a dead ReLU) decays geometrically through the denormal range, where a
    CPU multiply is ~20x slower; TensorFlow and XLA flush them by default, PyTorch does not.
    """
    before = denormals_flushed()
    torch.set_flush_denormal(on)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


@dataclass(frozen=True)
class Budget:
    """A job's length in its unit: ``epochs`` when set, else optimizer ``steps``."""

    epochs: int | None
    steps: int | None

    @classmethod
    def of(cls, ctx: Context) -> Budget:
        return cls(ctx.epochs, ctx.steps)

    @property
    def total(self) -> int:
        """The last count of the job: its epochs, or its steps."""
        if self.epochs is not None:
            return self.epochs
        return self.steps or 0

    @property
    def final_step(self) -> int:
        """Where the end-of-training metrics are logged: the last epoch or step."""
        return self.total

    def count(self, epoch: int, step: int) -> int:
        """Epochs or steps done, in the job's unit."""
        return epoch if self.epochs is not None else step

    def finished(self, epoch: int, step: int) -> bool:
        return self.count(epoch, step) >= self.total

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps of the whole job (epochs × ``steps_per_epoch`` when by epochs)."""
        if self.steps is not None:
            return self.steps
        return (self.epochs or 0) * steps_per_epoch

    def steps_left(self, step: int) -> bool:
        """Whether a step-counted job may take another optimizer step (always by epochs)."""
        return self.steps is None or step < self.steps


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """A fresh random partition of range(n) into index batches.

    A trailing batch of one example is dropped: BatchNorm cannot train on it,
    and the example is in another batch next epoch.
    """
    batches = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


def batch_count(n: int, batch_size: int) -> int:
    """How many minibatches ``minibatches`` cuts n examples into."""
    count = math.ceil(n / batch_size)
    lone_last = n % batch_size == 1 or batch_size == 1  # a last batch of one, dropped
    return count - 1 if count > 1 and lone_last else count


def loop_state(
    module: nn.Module, opt: torch.optim.Optimizer, epoch: int, step: int, best: float
) -> dict[str, Any]:
    """A snapshot: state_dict() aliases live tensors, which training would go on to change."""
    return {
        "model": copy.deepcopy(module.state_dict()),
        "optimizer": copy.deepcopy(opt.state_dict()),
        "epoch": epoch,
        "step": step,
        "best_val_loss": torch.tensor(best, dtype=torch.float64),
    }


def resume_from(
    module: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any] | None
) -> tuple[int, int, float]:
    """Load a checkpoint's model and optimizer; returns (epoch, step, best val loss) so far."""
    if state is None:
        return 0, 0, math.inf
    module.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    best = state.get("best_val_loss", math.inf)
    return int(state["epoch"]), int(state.get("step", 0)), float(best)


def train_epochs(
    module: nn.Module,
    opt: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    ctx: Context,
    *,
    loss_fn: LossFn,
    evaluate: EvalFn,
    before_step: Callable[[], None] | None = None,
) -> bool:
    """Minibatch training until ctx.epochs or ctx.steps; returns False when ctx asked to stop.

    Once per epoch: evaluate (eval mode, no grad), ``ctx.log``, ``ctx.progress``
    and ``ctx.checkpoint`` (``best`` when val_loss improved). ``should_stop`` is
    polled before every minibatch. A stopped, partial epoch is not checkpointed when
    counting epochs: the last completed epoch is what is kept, and a resume (say after a
    worker hands its job back) redoes the partial one, so the metric curve has no gap.
    Counting steps, the partial epoch is checkpointed at its step count.
    Raises ``Diverged`` on a non-finite training loss, before the update.
    ``before_step`` runs between each backward pass and its update (gradient clipping).
    An optimizer that ``needs_closure`` (``models.optim.Newton``) gets ``step(closure)``,
    the closure the minibatch's loss again with its graph.
    """
    budget = Budget.of(ctx)
    epoch, step, best = resume_from(module, opt, ctx.resume)
    while not budget.finished(epoch, step):
        epoch += 1
        losses, step, stopped = _one_epoch(module, opt, x, y, ctx, loss_fn, step, before_step)
        count = budget.count(epoch, step)
        if stopped:
            if losses and budget.steps is not None:
                ctx.checkpoint(count, loop_state(module, opt, epoch, step, best))
            return False
        module.eval()
        with torch.no_grad():
            metrics = {"train_loss": float(torch.stack(losses).mean()), **evaluate()}
        ctx.log(count, **metrics)
        ctx.progress(count, budget.total)
        improved = metrics["val_loss"] < best
        best = min(best, metrics["val_loss"])
        ctx.checkpoint(count, loop_state(module, opt, epoch, step, best), best=improved)
    return True


def _one_epoch(
    module: nn.Module,
    opt: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    ctx: Context,
    loss_fn: LossFn,
    step: int,
    before_step: Callable[[], None] | None = None,
) -> tuple[list[Tensor], int, bool]:
    """One pass over shuffled minibatches: (batch losses, optimizer steps so far, stopped)."""
    module.train()
    budget = Budget.of(ctx)
    losses: list[Tensor] = []
    for idx in minibatches(len(x), ctx.batch_size, ctx.generator):
        if not budget.steps_left(step):
            break
        if ctx.should_stop():
            return losses, step, True
        idx = idx.to(x.device)
        loss = loss_fn(x[idx], y[idx])
        if not bool(torch.isfinite(loss)):
            raise Diverged(step + 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if before_step is not None:
            before_step()
        if getattr(opt, "needs_closure", False):  # newton: the loss again, for its Hessian
            closure: Callable[[], Any] = functools.partial(loss_fn, x[idx], y[idx])
            opt.step(closure)
        else:
            opt.step()
        step += 1
        losses.append(loss.detach())
    return losses, step, False


def final_test(
    module: nn.Module, ctx: Context, test_metrics: EvalFn, *, keep: bool = False
) -> None:
    """The held-out numbers once, for the weights inference serves: ``test_metrics()`` (the
    ``test_*`` metrics of the test split) in eval mode without gradients, logged at the
    job's last epoch or step. Call it when ``train_epochs`` returned True (training
    finished).

    The weights are the best by validation (``ctx.best_model()``, loaded into ``module``
    first), else the final ones: the served checkpoint is the best one, and a test number
    (the leaderboard's, a benchmark's) of weights nobody can query would rank a model the
    service does not have. ``keep``: the test computed buffers the served checkpoint, saved
    before it, should carry (an energy model's log Z, ``models.energy.KeptLogZ``), so it is
    written again with the module's state (``ctx.update_served``)."""
    load_served(module, ctx)
    module.eval()
    with torch.no_grad():
        metrics = test_metrics()
    ctx.log(Budget.of(ctx).final_step, **metrics)
    if keep:
        ctx.update_served({k: v.detach().clone() for k, v in module.state_dict().items()})


def load_served(module: nn.Module, ctx: Context) -> None:
    """Put the weights inference serves into ``module``: the best checkpoint's
    (``ctx.best_model()``), else leave the final ones (no checkpoint was ever best)."""
    best = ctx.best_model()
    if best is not None:
        module.load_state_dict(best)
