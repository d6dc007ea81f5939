"""Pieces the predictive families share: activations, input/target normalisation,
the fully connected trunk, and the minibatch loop that talks to the runner's ``ctx``.

BatchNorm (Ioffe & Szegedy 2015) normalises each unit over the minibatch and
then applies a learnable affine map γ x̂ + β, so the network can undo the
whitening where it hurts (the notes: "have linear function after batchnorm:
at beginning it's centered but can unlearn this"). It sits between the linear
layer and the activation, as in the paper (§3.2).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, Strict
from torch import Tensor, nn

from models.data import DataInfo
from models.family import Context, Diverged

Width = Annotated[int, Strict(), Field(ge=1, le=4096)]  # "64" and true are refused
# hidden layer widths, the same bounds in every family: 1-8 layers of 1-4096 units
Hidden = Annotated[list[Width], Field(min_length=1, max_length=8)]

ActivationName = Literal["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


class Normalizer(nn.Module):
    """Standardises inputs and regression targets with training-split statistics.

    The statistics are buffers (``x_mean``, ``x_std``, ``y_mean``, ``y_std``), so
    every checkpoint carries them and inference takes raw inputs. They start as
    the identity; ``fit`` sets them from the training split.
    """

    x_mean: Tensor
    x_std: Tensor
    y_mean: Tensor
    y_std: Tensor

    def __init__(self, in_dim: int, target_dim: int = 1) -> None:
        super().__init__()
        self.register_buffer("x_mean", torch.zeros(in_dim))
        self.register_buffer("x_std", torch.ones(in_dim))
        self.register_buffer("y_mean", torch.zeros(target_dim))
        self.register_buffer("y_std", torch.ones(target_dim))

    @torch.no_grad()
    def fit(self, x: Tensor, y: Tensor | None = None) -> None:
        """x (N, D); y (N, target_dim) float targets, or None (classification: identity)."""
        self.x_mean.copy_(x.mean(0))
        std = x.std(0, unbiased=False)
        # A mostly constant feature (MNIST's border pixels) has a tiny std but a wide
        # range: flooring the std at a tenth of the range keeps its rare values from
        # becoming inputs in the hundreds; ordinary features (range of 4-6 stds) are
        # untouched. A constant feature gets std 1.
        std = torch.maximum(std, 0.1 * (x.amax(0) - x.amin(0)))
        self.x_std.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        if y is not None:
            self.y_mean.copy_(y.mean(0))
            y_std = y.std(0, unbiased=False)
            self.y_std.copy_(torch.where(y_std > 0, y_std, torch.ones_like(y_std)))

    def x(self, x: Tensor) -> Tensor:
        return (x - self.x_mean) / self.x_std

    def y(self, y: Tensor) -> Tensor:
        return (y - self.y_mean) / self.y_std

    def y_raw(self, y_norm: Tensor) -> Tensor:
        """Normalised target values back to raw units."""
        return y_norm * self.y_std + self.y_mean


def mlp_trunk(
    in_dim: int,
    hidden: Sequence[int],
    activation: str,
    batchnorm: bool = False,
    dropout: float = 0.0,
    dropout_layer: Callable[[float], nn.Module] = nn.Dropout,
) -> nn.Sequential:
    """[Linear, (BatchNorm1d), activation, (dropout)] per width: (B, in) -> (B, hidden[-1]).

    BatchNorm keeps ``affine=True`` (the learnable γ, β) and the Linear before it
    drops its bias, which BatchNorm's centring would cancel anyway.
    ``dropout_layer`` lets MC dropout swap in a layer that stays on at inference.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers.append(nn.Linear(width, h, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(h, affine=True))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(dropout_layer(dropout))
        width = h
    return nn.Sequential(*layers)


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """A fresh random partition of range(n) into index batches.

    A trailing batch of one example is dropped: BatchNorm cannot train on it,
    and the example is in another batch next epoch.
    """
    batches = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


# --- the shared loop -------------------------------------------------------------------------
#
# Checkpoint state: {"model": module.state_dict(), "optimizer": opt.state_dict(),
# "epoch": epochs begun and ended (a stopped epoch counts), "step": optimizer steps,
# "best_val_loss": 0-d float64 tensor}. Metrics, progress and checkpoints are keyed by
# the job's unit: the epoch number with ctx.epochs, the optimizer step with ctx.steps.

LossFn = Callable[[Tensor, Tensor], Tensor]  # (x batch, y batch) -> scalar training loss
EvalFn = Callable[[], dict[str, float]]  # validation metrics, must include "val_loss"


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


def _unit(ctx: Context, epoch: int, step: int) -> tuple[int, int]:
    """(count, total) in the job's unit."""
    if ctx.epochs is not None:
        return epoch, ctx.epochs
    assert ctx.steps is not None
    return step, ctx.steps


def _finished(ctx: Context, epoch: int, step: int) -> bool:
    count, total = _unit(ctx, epoch, step)
    return count >= total


def train_epochs(
    module: nn.Module,
    opt: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    ctx: Context,
    *,
    loss_fn: LossFn,
    evaluate: EvalFn,
) -> bool:
    """Minibatch training until ctx.epochs or ctx.steps; returns False when ctx asked to stop.

    Once per epoch: evaluate (eval mode, no grad), ``ctx.log``, ``ctx.progress``
    and ``ctx.checkpoint`` (``best`` when val_loss improved). ``should_stop`` is
    polled before every minibatch. A stopped, partial epoch is not checkpointed when
    counting epochs: the last completed epoch is what is kept, and a resume (say after a
    worker hands its job back) redoes the partial one, so the metric curve has no gap.
    Counting steps, the partial epoch is checkpointed at its step count.
    Raises ``Diverged`` on a non-finite training loss, before the update.
    """
    epoch, step, best = resume_from(module, opt, ctx.resume)
    while not _finished(ctx, epoch, step):
        epoch += 1
        losses, step, stopped = _one_epoch(module, opt, x, y, ctx, loss_fn, step)
        count, total = _unit(ctx, epoch, step)
        if stopped:
            if losses and ctx.steps is not None:
                ctx.checkpoint(count, loop_state(module, opt, epoch, step, best))
            return False
        module.eval()
        with torch.no_grad():
            metrics = {"train_loss": float(torch.stack(losses).mean()), **evaluate()}
        ctx.log(count, **metrics)
        ctx.progress(count, total)
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
) -> tuple[list[Tensor], int, bool]:
    """One pass over shuffled minibatches: (batch losses, optimizer steps so far, stopped)."""
    module.train()
    losses: list[Tensor] = []
    for idx in minibatches(len(x), ctx.batch_size, ctx.generator):
        if ctx.steps is not None and step >= ctx.steps:
            break
        if ctx.should_stop():
            return losses, step, True
        idx = idx.to(x.device)
        loss = loss_fn(x[idx], y[idx])
        if not bool(torch.isfinite(loss)):
            raise Diverged(step + 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.detach())
    return losses, step, False


def head_width(info: DataInfo, heteroscedastic: bool) -> int:
    """Outputs of a predictive head: class logits, or means (and log variances)."""
    if info.task == "classification":
        return info.n_classes or 1
    return info.target_dim * (2 if heteroscedastic else 1)
