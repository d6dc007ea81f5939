"""The ``rnn`` family record: training (``fit``, with the diagnostics at each evaluation),
evaluation and prediction."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.data import DataInfo, Dataset
from models.family import Capability, Context, Family
from models.loop import final_test, train_epochs
from models.rnn.diagnostics import clip_gradients, gradient_metrics, gradients
from models.rnn.model import MAX_STEP_STATES, RNN, RNNParams, build, example_losses, step_states
from models.uncertainty import classification_summary, regression_summary

DATASETS = frozenset({"adding", "adding_50", "adding_200", "seq_digits", "sine_seq", "mnist1d"})
PATTERNS = frozenset({"adding_<T>"})  # the adding problem at any length: adding_37


def max_batch_size(params: RNNParams, info: DataInfo) -> int:
    """The largest minibatch a job may train on: MAX_STEP_STATES over the states one
    sequence's step holds (T × layers × hidden), at least 1."""
    return max(1, MAX_STEP_STATES // step_states(params, info.input_shape[0]))


@torch.no_grad()
def evaluate(module: RNN, x: Tensor, y: Tensor, split: str) -> dict[str, float]:
    """Loss and accuracy or raw-unit MSE on one split; on ``val`` also refreshes ``noise_var``."""
    out = torch.cat([module(xb) for xb in x.split(1024)])
    loss = float(example_losses(module, out, y).mean())
    if module.task == "classification":
        return {
            f"{split}_loss": loss,
            f"{split}_accuracy": float((out.argmax(-1) == y).float().mean()),
        }
    residual = y - (out * module.y_std + module.y_mean)  # (N, D), raw units
    if split == "val":
        module.noise_var.copy_(residual.pow(2).mean(0))
    return {f"{split}_loss": loss, f"{split}_mse": float(residual.pow(2).mean())}


def fit(module: nn.Module, data: Dataset, params: RNNParams, ctx: Context) -> None:
    assert isinstance(module, RNN)
    dev = ctx.device
    module.to(dev)
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    x_val, y_val = data.x_val.to(dev), data.y_val.to(dev)
    if module.task == "regression":
        module.y_mean.copy_(y.mean(0))
        module.y_std.copy_(y.std(0).clamp_min(1e-6))
    probe_x, probe_y = x_val[: params.probe], y_val[: params.probe]
    opt = ctx.make_optimizer(module.parameters())
    weights = list(module.parameters())
    norms: list[float] = []  # this epoch's pre-clip gradient norms

    def clip() -> None:
        norms.append(clip_gradients(weights, params.clip_norm))

    def validate() -> dict[str, float]:
        metrics = evaluate(module, x_val, y_val, "val")
        metrics |= gradient_metrics(gradients(module, probe_x, probe_y))
        if norms:
            metrics |= {"grad_norm": sum(norms) / len(norms), "grad_norm_max": max(norms)}
            if params.clip_norm is not None:
                metrics["clipped"] = sum(n > params.clip_norm for n in norms) / len(norms)
        norms.clear()
        return metrics

    finished = train_epochs(
        module, opt, x, y, ctx,
        loss_fn=lambda xb, yb: example_losses(module, module(xb), yb).mean(),
        evaluate=validate,
        before_step=clip,
    )  # fmt: skip
    if finished:
        final_test(
            module, ctx, lambda: evaluate(module, data.x_test.to(dev), data.y_test.to(dev), "test")
        )


@torch.no_grad()
def predict(module: nn.Module, x: Tensor, mc_samples: int = 1) -> dict[str, Tensor]:
    """Deterministic prediction of sequences x (N, T, F) (``mc_samples`` is ignored): raw
    units. Regression: mean, epistemic_var (zeros), aleatoric_var (``noise_var``),
    total_var, (N, D) each; classification: probs (N, C) and the entropies (N,)."""
    assert isinstance(module, RNN)
    module.eval()
    out = module(x.to(module.head.weight.device))
    if module.task == "classification":
        return classification_summary(out.softmax(-1).unsqueeze(0))
    mean = out * module.y_std + module.y_mean
    return regression_summary(mean.unsqueeze(0), module.noise_var.expand_as(mean).unsqueeze(0))


def predict_rows(module: nn.Module) -> int:
    """A prediction steps through the sequence: T forward rows per input (the API's bound)."""
    assert isinstance(module, RNN)
    return module.length


FAMILY = Family(
    name="rnn",
    description="tanh/LSTM/GRU sequence models: vanishing and exploding gradients through time",
    params=RNNParams,
    datasets=DATASETS,
    capabilities={Capability.PREDICT: predict, Capability.GRADIENTS: gradients},
    build=build,
    fit=fit,
    default_epochs=30,
    mc_passes=lambda module, t: 1,
    predict_rows=predict_rows,
    max_batch_size=max_batch_size,
    dataset_patterns=PATTERNS,
)
