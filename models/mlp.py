"""``mlp``: a fully connected network for regression and classification.

What it shows: the activation functions of the notes, BatchNorm with its
learnable affine map after normalisation (Ioffe & Szegedy 2015), ordinary
dropout (Srivastava et al. 2014; off at inference, unlike ``mc_dropout``), and
every optimizer of ``models.optim``, Newton's method included (a small network:
``models.optim.MAX_NEWTON_PARAMETERS``).

Regression trains on standardised targets with the mean squared error and
reports a homoscedastic noise variance: the residual variance on the
validation split in raw units (the buffer ``noise_var``, refreshed each epoch),
as ``aleatoric_var``; its epistemic variance is zero (one deterministic model).
Classification trains with cross-entropy; its mutual information is zero.

Checkpoint ``state["model"]`` keys: ``normalizer.{x_mean,x_std,y_mean,y_std}``,
``trunk.*`` (``nn.Sequential``: Linear, [BatchNorm1d], activation, [Dropout] per
hidden layer), ``head.{weight,bias}``, and ``noise_var`` (regression only).
"""

from __future__ import annotations

import math
from typing import Self

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from models.data import PREDICTIVE_DATASETS, DataInfo, Dataset
from models.family import Capability, Context, Family, Params
from models.layers import ActivationName, Hidden, Normalizer, mlp_trunk
from models.loop import final_test, train_epochs
from models.uncertainty import classification_summary, regression_summary


class MLPParams(Params):
    hidden: Hidden = Field(
        default_factory=lambda: [64, 64],
        description="hidden layer widths from input to output (1-8 layers of 1-4096 units)",
    )
    activation: ActivationName = Field("relu", description="nonlinearity after each hidden layer")
    batchnorm: bool = Field(
        False, description="BatchNorm1d (learnable γ, β) between each linear layer and activation"
    )
    batchnorm_affine: bool = Field(
        True,
        description="BatchNorm's learnable γ, β (the linear map after the normalisation, "
        "which can undo it); false: every unit stays centred and scaled",
    )
    dropout: float = Field(
        0.0,
        ge=0.0,
        le=0.9,
        description="dropout probability after each hidden layer, training only",
    )

    @model_validator(mode="after")
    def _affine_of_batchnorm(self) -> Self:
        if not self.batchnorm_affine and not self.batchnorm:
            raise ValueError("batchnorm_affine sets BatchNorm's γ, β; give batchnorm: true")
        return self


class MLP(nn.Module):
    """Raw inputs (B, *input_shape) -> logits (B, C) or standardised targets (B, target_dim)."""

    noise_var: Tensor

    def __init__(self, params: MLPParams, info: DataInfo) -> None:
        super().__init__()
        self.task = info.task
        in_dim = math.prod(info.input_shape)
        out_dim = (info.n_classes or 1) if info.task == "classification" else info.target_dim
        self.normalizer = Normalizer(in_dim, info.target_dim)
        self.trunk = mlp_trunk(
            in_dim, params.hidden, params.activation, params.batchnorm, params.dropout,
            batchnorm_affine=params.batchnorm_affine,
        )  # fmt: skip
        self.head = nn.Linear(params.hidden[-1], out_dim)
        if info.task == "regression":
            # residual variance on the validation split, raw units (D,)
            self.register_buffer("noise_var", torch.zeros(info.target_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(self.normalizer.x(x.flatten(1))))


def build(params: MLPParams, info: DataInfo) -> MLP:
    return MLP(params, info)


def loss(module: MLP, x: Tensor, y: Tensor) -> Tensor:
    """MSE on standardised targets, or cross-entropy on labels: scalar."""
    out = module(x)
    if module.task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out, module.normalizer.y(y))


def evaluate(module: MLP, x: Tensor, y: Tensor, split: str) -> dict[str, float]:
    """Loss and accuracy or raw-unit RMSE on one split; on ``val`` also refreshes ``noise_var``."""
    out = module(x)
    if module.task == "classification":
        accuracy = (out.argmax(-1) == y).float().mean()
        return {
            f"{split}_loss": float(F.cross_entropy(out, y)),
            f"{split}_accuracy": float(accuracy),
        }
    residual = y - module.normalizer.y_raw(out)  # (N, D), raw units
    if split == "val":
        module.noise_var.copy_(residual.pow(2).mean(0))
    return {
        f"{split}_loss": float(F.mse_loss(out, module.normalizer.y(y))),
        f"{split}_rmse": float(residual.pow(2).mean().sqrt()),
    }


class LayerGradients:
    """The mean over an epoch's optimizer steps of ‖∂L/∂W‖ (Frobenius) of each linear
    layer's weights: ``grad_norm_l1`` (the layer reading the input) to ``grad_norm_l{L}``,
    then ``grad_norm_head``. Backpropagation multiplies the gradient by the activation's
    derivative at every layer it crosses, so a saturating one (sigmoid: σ' ≤ 1/4) shows as
    norms falling from the head towards the input (the notes: activations "not
    saturating")."""

    def __init__(self, module: MLP) -> None:
        linears = [m for m in module.trunk if isinstance(m, nn.Linear)]
        self.names = [f"grad_norm_l{i + 1}" for i in range(len(linears))] + ["grad_norm_head"]
        self.weights = [m.weight for m in linears] + [module.head.weight]
        self.sums = torch.zeros(len(self.weights), dtype=torch.float64)
        self.steps = 0

    def add(self) -> None:
        """Before each update (the loop's ``before_step``): add this step's norms."""
        norms = [w.grad.norm() if w.grad is not None else w.new_zeros(()) for w in self.weights]
        self.sums += torch.stack(norms).detach().double().cpu()
        self.steps += 1

    def means(self) -> dict[str, float]:
        """The means since the last call (none after a resume that ran no step)."""
        if self.steps == 0:
            return {}
        out = dict(zip(self.names, (self.sums / self.steps).tolist(), strict=True))
        self.sums.zero_()
        self.steps = 0
        return out


def fit(module: nn.Module, data: Dataset, params: MLPParams, ctx: Context) -> None:
    assert isinstance(module, MLP)
    dev = ctx.device
    module.to(dev)
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    x_val, y_val = data.x_val.to(dev), data.y_val.to(dev)
    module.normalizer.fit(x.flatten(1), y if module.task == "regression" else None)
    opt = ctx.make_optimizer(module.parameters())
    gradients = LayerGradients(module)
    finished = train_epochs(
        module, opt, x, y, ctx,
        loss_fn=lambda xb, yb: loss(module, xb, yb),
        evaluate=lambda: {**evaluate(module, x_val, y_val, "val"), **gradients.means()},
        before_step=gradients.add,
    )  # fmt: skip
    if finished:  # held-out numbers once, for the final weights
        final_test(
            module, ctx, lambda: evaluate(module, data.x_test.to(dev), data.y_test.to(dev), "test")
        )


@torch.no_grad()
def predict(module: nn.Module, x: Tensor, mc_samples: int = 1) -> dict[str, Tensor]:
    """Deterministic prediction (eval mode; ``mc_samples`` is ignored): raw units, (N, ·) each.

    Regression: mean, epistemic_var (zeros), aleatoric_var (``noise_var``), total_var.
    Classification: probs, predictive_entropy, expected_entropy, mutual_information (zeros).
    """
    assert isinstance(module, MLP)
    module.eval()
    out = module(x.to(module.normalizer.x_mean.device))
    if module.task == "classification":
        return classification_summary(out.softmax(-1).unsqueeze(0))
    mean = module.normalizer.y_raw(out)
    return regression_summary(mean.unsqueeze(0), module.noise_var.expand_as(mean).unsqueeze(0))


FAMILY = Family(
    name="mlp",
    description="fully connected network: activations, BatchNorm with learnable affine, dropout",
    params=MLPParams,
    datasets=PREDICTIVE_DATASETS,
    capabilities={Capability.PREDICT: predict},
    build=build,
    fit=fit,
    default_epochs=50,
    mc_passes=lambda module, t: 1,
    min_batch_size=lambda p: 2 if p.batchnorm else 1,
    second_order=True,  # train_epochs passes newton its closure
)
