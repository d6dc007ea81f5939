"""``multitask``: several tasks on one shared trunk, weighed by learned task uncertainty.

Kendall, Gal & Cipolla 2018 ("Multi-task learning using uncertainty to weigh losses
for scene geometry and semantics"). Each task i has a homoscedastic noise σ_i (the
notes: "homoscedastic uncertainty about the task, we might reduce by combining
tasks"), learned as s_i = log σ_i² (§3.2: predicting the log variance is stabler
than σ and keeps it positive). The total loss is the joint negative log-likelihood:

- regression, a Gaussian likelihood (eqs. 2, 5-7): ``1/(2σ²) L + log σ``
  = ``½ exp(−s) L + ½ s``, with L the squared error;
- classification, a softmax scaled by 1/σ² (eqs. 8-10): ``1/σ² L + log σ``
  = ``exp(−s) L + ½ s``, with L the cross-entropy; eq. 10's approximation
  ``(1/σ) Σ exp(f/σ²) ≈ (Σ exp f)^(1/σ²)`` turns the scaled softmax's NLL into this.

The data terms differ by the factor ½: the Gaussian's exponent carries it, the
softmax's does not. Setting the derivative in s to zero gives the optimum for
fixed L: σ² = L (regression) and σ² = 2 L (classification). The seed notes write
``‖y−ŷ‖²/σ² + log σ``; as in ``models.uncertainty.heteroscedastic_loss`` we keep
the exact likelihood's ½, which is what makes σ² converge to the MSE.

L is averaged over the batch and over a regression task's D target columns (in
standardised units), i.e. 1/D of the D-dimensional isotropic Gaussian NLL, so σ²
is the per-column noise variance. ``weighting="equal"`` trains Σ L_i and ``"fixed"``
Σ w_i L_i (the hand-tuned baselines of the paper's Table 1); then s is not trained
but set after every epoch to its optimum on the validation split (σ² = L or 2L), so
predictions and the NLL metrics still have a noise level.

Predictions, per task ``t``: regression ``t.mean``, ``t.epistemic_var`` (zeros: one
deterministic net), ``t.aleatoric_var`` (σ_t² in raw units), ``t.total_var``;
classification ``t.probs`` = softmax(f), ``t.predictive_entropy``,
``t.expected_entropy``, ``t.mutual_information`` (zeros). softmax(f), not
softmax(f/σ²): for any fixed σ the approximate loss exp(−s)·CE(f) has the same
minimiser in f, so softmax(f) is what the head is fitted to be.

A single-task set is read as one task named after its kind (``DataInfo.task_list``).

Checkpoint ``state["model"]`` keys: ``normalizer.{x_mean,x_std,y_mean,y_std}`` (identity
for label columns), ``trunk.*``, ``heads.<task>.{weight,bias}``, ``log_var`` (K,) = s.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from models.data import DataInfo, Dataset, TaskInfo
from models.family import Capability, Context, Family, Params
from models.layers import ActivationName, Hidden, Normalizer, mlp_trunk
from models.loop import final_test, train_epochs
from models.uncertainty import LOG_2PI, classification_summary, regression_summary

Weight = Annotated[float, Field(ge=0.0, le=1e3)]


class MultiTaskParams(Params):
    hidden: Hidden = Field(
        default_factory=lambda: [64, 64],
        description="shared trunk widths from input to heads (1-8 layers of 1-4096 units)",
    )
    activation: ActivationName = Field("relu", description="nonlinearity after each hidden layer")
    weighting: Literal["uncertainty", "equal", "fixed"] = Field(
        "uncertainty",
        description="uncertainty: learned σ per task (Kendall et al. 2018); equal: Σ L_i; "
        "fixed: Σ w_i L_i with `weights`",
    )
    weights: dict[str, Weight] | None = Field(
        None, description="fixed: task name -> weight w_i (every task of the dataset)"
    )


class MultiTaskNet(nn.Module):
    """Raw inputs (B, *input_shape) -> {task: head output (B, D_t or C_t)}."""

    log_var: nn.Parameter
    weights: Tensor
    is_reg: Tensor

    def __init__(self, params: MultiTaskParams, info: DataInfo) -> None:
        super().__init__()
        self.tasks = info.task_list()
        names = [t.name for t in self.tasks]
        if any("." in n or not n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"task names must be distinct, non-empty, without dots: {names}")
        if params.weighting == "fixed" and set(params.weights or {}) != set(names):
            raise ValueError(f"weighting 'fixed' needs one weight per task: {names}")
        self.weighting = params.weighting
        self.register_buffer(
            "weights",
            torch.tensor([(params.weights or {}).get(n, 1.0) for n in names]),
            persistent=False,
        )
        self.register_buffer("is_reg", torch.tensor([t.kind == "regression" for t in self.tasks]))
        starts = [0, *itertools.accumulate(t.dim for t in self.tasks)]
        self.cols = [slice(a, b) for a, b in itertools.pairwise(starts)]
        in_dim = math.prod(info.input_shape)
        self.normalizer = Normalizer(in_dim, starts[-1])
        self.trunk = mlp_trunk(in_dim, params.hidden, params.activation)
        self.heads = nn.ModuleDict(
            {t.name: nn.Linear(params.hidden[-1], head_width(t)) for t in self.tasks}
        )
        # s_i = log σ_i²; trained only with weighting="uncertainty"
        self.log_var = nn.Parameter(
            torch.zeros(len(self.tasks)), requires_grad=params.weighting == "uncertainty"
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.trunk(self.normalizer.x(x.flatten(1)))  # (B, hidden[-1])
        return {name: head(h) for name, head in self.heads.items()}

    def targets(self, y: Tensor) -> list[Tensor]:
        """(B, total) or single-task targets -> per task: standardised (B, D) or labels (B,)."""
        y = self.normalizer.y(y.reshape(len(y), -1).float())  # identity on label columns
        return [
            y[:, c] if t.kind == "regression" else y[:, c.start].long()
            for t, c in zip(self.tasks, self.cols, strict=True)
        ]


def head_width(task: TaskInfo) -> int:
    return task.dim if task.kind == "regression" else task.n_classes or 2


def build(params: MultiTaskParams, info: DataInfo) -> MultiTaskNet:
    return MultiTaskNet(params, info)


def task_losses(module: MultiTaskNet, x: Tensor, y: Tensor) -> Tensor:
    """Data terms L_i (K,): MSE on standardised targets (batch and columns), or cross-entropy."""
    out = module(x)
    return torch.stack(
        [
            F.mse_loss(out[t.name], yt)
            if t.kind == "regression"
            else F.cross_entropy(out[t.name], yt)
            for t, yt in zip(module.tasks, module.targets(y), strict=True)
        ]
    )


def uncertainty_weighted_loss(losses: Tensor, log_var: Tensor, is_reg: Tensor) -> Tensor:
    """Kendall et al. 2018, eqs. 7 and 10: Σ_i c_i exp(−s_i) L_i + ½ s_i, with c_i = ½ for a
    regression task (1/(2σ²) L + log σ) and 1 for classification (1/σ² L + log σ).
    losses, log_var, is_reg: (K,) -> scalar."""
    c = torch.where(is_reg, 0.5, 1.0)
    return (c * torch.exp(-log_var) * losses + 0.5 * log_var).sum()


def optimal_log_var(losses: Tensor, is_reg: Tensor) -> Tensor:
    """argmin_s of each term of ``uncertainty_weighted_loss``: log L (regression), log 2L."""
    return torch.log(torch.where(is_reg, 1.0, 2.0) * losses)


def total_loss(module: MultiTaskNet, x: Tensor, y: Tensor) -> Tensor:
    losses = task_losses(module, x, y)
    if module.weighting == "uncertainty":
        return uncertainty_weighted_loss(losses, module.log_var, module.is_reg)
    return (module.weights * losses).sum()


def raw_mean(module: MultiTaskNet, out: Tensor, task: int) -> Tensor:
    """A regression head's standardised output (N, D) in raw units."""
    c = module.cols[task]
    return out * module.normalizer.y_std[c] + module.normalizer.y_mean[c]


def raw_noise_var(module: MultiTaskNet, task: int) -> Tensor:
    """σ² of a regression task in raw units, per column (D,)."""
    y_std = module.normalizer.y_std[module.cols[task]]
    return module.log_var[task].exp() * y_std**2


def evaluate(module: MultiTaskNet, x: Tensor, y: Tensor, split: str) -> dict[str, float]:
    """Per task: RMSE and Gaussian NLL (raw units, σ² = exp(s)) or accuracy and NLL (nats);
    ``{split}_loss`` is the sum of the tasks' NLLs."""
    out, metrics, total = module(x), {}, 0.0
    for i, (t, yt) in enumerate(zip(module.tasks, module.targets(y), strict=True)):
        if t.kind == "regression":
            raw, mean = y[:, module.cols[i]], raw_mean(module, out[t.name], i)
            var = raw_noise_var(module, i)
            nll = 0.5 * (LOG_2PI + var.log() + (raw - mean) ** 2 / var).sum(-1).mean()
            metrics[f"{split}_{t.name}_rmse"] = float((raw - mean).pow(2).mean().sqrt())
        else:
            nll = F.cross_entropy(out[t.name], yt)
            metrics[f"{split}_{t.name}_accuracy"] = float(
                (out[t.name].argmax(-1) == yt).float().mean()
            )
        metrics[f"{split}_{t.name}_nll"] = float(nll)
        total += float(nll)
    return {f"{split}_loss": total, **metrics}


def sigmas(module: MultiTaskNet) -> dict[str, float]:
    """σ per task: raw units for regression (RMS over columns), unitless for classification."""
    out = {}
    for i, t in enumerate(module.tasks):
        var = raw_noise_var(module, i).mean() if t.kind == "regression" else module.log_var[i].exp()
        out[f"sigma_{t.name}"] = float(var.sqrt())
    return out


def fit(module: nn.Module, data: Dataset, params: MultiTaskParams, ctx: Context) -> None:
    assert isinstance(module, MultiTaskNet)
    dev = ctx.device
    module.to(dev)
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    x_val, y_val = data.x_val.to(dev), data.y_val.to(dev)
    fit_normalizer(module, x, y)
    net = [p for n, p in module.named_parameters() if n != "log_var"]
    groups: list[dict[str, object]] = [{"params": net}]
    if module.weighting == "uncertainty":  # no weight decay on s: it would pull σ to 1
        groups.append({"params": [module.log_var], "weight_decay": 0.0})
    opt = ctx.make_optimizer(groups)

    def validate() -> dict[str, float]:
        train = task_losses(module, x, y)
        if module.weighting != "uncertainty":
            module.log_var.copy_(optimal_log_var(task_losses(module, x_val, y_val), module.is_reg))
        per_task = {f"loss_{t.name}": float(v) for t, v in zip(module.tasks, train, strict=True)}
        return {**evaluate(module, x_val, y_val, "val"), **per_task, **sigmas(module)}

    finished = train_epochs(
        module, opt, x, y, ctx, loss_fn=lambda xb, yb: total_loss(module, xb, yb), evaluate=validate
    )
    if finished:
        final_test(
            module, ctx, lambda: evaluate(module, data.x_test.to(dev), data.y_test.to(dev), "test")
        )


@torch.no_grad()
def fit_normalizer(module: MultiTaskNet, x: Tensor, y: Tensor) -> None:
    """Training-split statistics; label columns keep the identity (mean 0, std 1)."""
    y = y.reshape(len(y), -1).float()
    module.normalizer.fit(x.flatten(1), y)
    for t, c in zip(module.tasks, module.cols, strict=True):
        if t.kind == "classification":
            module.normalizer.y_mean[c] = 0.0
            module.normalizer.y_std[c] = 1.0


@torch.no_grad()
def predict(module: nn.Module, x: Tensor, mc_samples: int = 1) -> dict[str, Tensor]:
    """Deterministic (``mc_samples`` is ignored); keys ``<task>.<output>``, see the module doc."""
    assert isinstance(module, MultiTaskNet)
    module.eval()
    out = module(x.to(module.log_var.device))
    result: dict[str, Tensor] = {}
    for i, t in enumerate(module.tasks):
        if t.kind == "regression":
            mean = raw_mean(module, out[t.name], i)  # (N, D)
            var = raw_noise_var(module, i).expand_as(mean)
            summary = regression_summary(mean.unsqueeze(0), var.unsqueeze(0))
        else:
            summary = classification_summary(out[t.name].softmax(-1).unsqueeze(0))
        result.update({f"{t.name}.{k}": v for k, v in summary.items()})
    return result


FAMILY = Family(
    name="multitask",
    description="shared trunk, one head per task, losses weighed by learned task uncertainty",
    params=MultiTaskParams,
    datasets=frozenset({"multitask_synth"}),
    capabilities={Capability.PREDICT: predict},
    build=build,
    fit=fit,
    default_epochs=100,
    mc_passes=lambda module, t: 1,
)
