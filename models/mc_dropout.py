"""``mc_dropout``: Monte Carlo dropout, dropout kept on at inference.

Gal & Ghahramani 2016 ("Dropout as a Bayesian approximation") read a network
trained with dropout and L2 weight decay as variational inference with a
Bernoulli variational distribution over its weight rows; T stochastic passes at
test time sample it, and their spread is the epistemic uncertainty.

- Dropout with probability p (drop) after every hidden activation, i.e. on the
  input of every later weight layer, and optionally on the network's input.
  ``MCDropout`` ignores train/eval mode. Every row of a batch draws its own mask.
- Model precision (§4, eq. 7; the notes' τ = l²p/(2Nλ) with p the keep probability):
  ``τ = l² (1-p) / (2 N λ)`` with λ the coefficient of ``λ‖W‖²`` in the objective
  ``(1/N) Σ E + λ Σ ‖W‖²`` and ``E = ½‖y-ŷ‖²``. torch's ``weight_decay`` wd adds
  ``wd·w`` to the gradient, i.e. λ = wd/2. Given ``tau``, weights fed by dropout get
  λ = l²(1-p)/(2Nτ); biases and an undropped first layer, which no mask touches,
  get λ = l²/(2Nτ) (Gal 2016, PhD thesis, ch. 3). Without ``tau`` the optimizer's
  weight decay is used, and a homoscedastic regressor fits τ on the validation
  split by maximising the MC log-likelihood over a log grid after every epoch
  (the protocol of Gal & Ghahramani's UCI experiments).
- Heteroscedastic head (Kendall & Gal 2017): the last layer outputs a mean and
  s = log σ² per target, trained with ``heteroscedastic_loss``.

τ and σ² live in standardised target units inside the network (buffer ``tau``);
predictions and metrics (val_rmse, val_ll, test_*) are in raw units.

Checkpoint ``state["model"]`` keys: ``normalizer.{x_mean,x_std,y_mean,y_std}``,
``trunk.*`` (Linear, activation, MCDropout per hidden layer), ``head.{weight,bias}``
(2·target_dim outputs when heteroscedastic: means then log variances), ``tau`` (0-d).
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from models.data import PREDICTIVE_DATASETS, DataInfo, Dataset
from models.family import Capability, Context, Family, Params
from models.layers import (
    ActivationName,
    Hidden,
    Normalizer,
    head_width,
    mlp_trunk,
)
from models.loop import final_test, train_epochs
from models.uncertainty import (
    best_tau,
    classification_summary,
    heteroscedastic_loss,
    inference_generator,
    model_precision,
    regression_summary,
    sampled_classification_metrics,
    sampled_regression_metrics,
    weight_decay_for_precision,
)


class MCDropoutParams(Params):
    hidden: Hidden = Field(
        default_factory=lambda: [64, 64],
        description="hidden layer widths from input to output (1-8 layers of 1-4096 units)",
    )
    # GELU by default: far more epistemic variance in sine_gap's gap than ReLU, at the same
    # test log-likelihood (docs/benchmarks.md, "Tuning history")
    activation: ActivationName = Field(
        "gelu", description="nonlinearity after each hidden layer (gelu: see the module notes)"
    )
    dropout: float = Field(
        0.1, gt=0.0, le=0.9, description="drop probability p, kept on at inference"
    )
    input_dropout: bool = Field(
        False, description="also drop network inputs (harmful for very few input features)"
    )
    heteroscedastic: bool = Field(
        True, description="regression: predict log σ² per input (ignored for classification)"
    )
    nll_beta: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="heteroscedastic regression: β of β-NLL (Seitzer et al. 2022), each "
        "point's NLL weighted by stop-gradient(σ²)^β; 0: the plain NLL",
    )
    length_scale: float = Field(
        1e-2, gt=0.0, le=1e3, description="prior length scale l of the weights (Gal & Ghahramani)"
    )
    tau: Annotated[float, Field(gt=0.0, le=1e8)] | None = Field(
        None,
        description="model precision τ, sets the weight decay; None: the optimizer's weight "
        "decay, and homoscedastic regression fits τ on the validation split",
    )
    mc_samples_eval: int = Field(
        50, ge=1, le=1000, description="stochastic passes T for validation and test metrics"
    )


class MCDropout(nn.Module):
    """Inverted dropout that stays on in eval mode: a sample of the Bernoulli variational q(W)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.drop_prob = p

    def forward(self, x: Tensor) -> Tensor:
        gen = inference_generator()
        if gen is None or self.drop_prob == 0:  # training, or inference outside seeded_inference
            return F.dropout(x, self.drop_prob, training=True)
        if self.drop_prob >= 1:
            return torch.zeros_like(x)
        # masks from the request's own generator (drawn on its device, the CPU), inverted
        keep = torch.rand(x.shape, generator=gen, device=gen.device).to(x.device) >= self.drop_prob
        return x * keep / (1 - self.drop_prob)

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class MCDropoutNet(nn.Module):
    """Raw inputs (B, *input_shape) -> head outputs (B, K); ``passes`` gives T samples (T, N, K)."""

    tau: Tensor

    def __init__(self, params: MCDropoutParams, info: DataInfo) -> None:
        super().__init__()
        self.task = info.task
        self.target_dim = info.target_dim
        self.heteroscedastic = params.heteroscedastic and info.task == "regression"
        self.nll_beta = params.nll_beta
        in_dim = math.prod(info.input_shape)
        out_dim = head_width(info, self.heteroscedastic)
        self.normalizer = Normalizer(in_dim, info.target_dim)
        self.input_dropout = params.input_dropout
        self.drop_in = MCDropout(params.dropout) if params.input_dropout else nn.Identity()
        self.trunk = mlp_trunk(
            in_dim,
            params.hidden,
            params.activation,
            dropout=params.dropout,
            dropout_layer=MCDropout,
        )
        self.head = nn.Linear(params.hidden[-1], out_dim)
        self.register_buffer("tau", torch.ones(()))  # standardised units: 1/τ = noise var / Var[y]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(self.drop_in(self.normalizer.x(x.flatten(1)))))

    def passes(self, x: Tensor, t: int) -> Tensor:
        """T stochastic passes as one batched forward: x (N, ...) -> (T, N, K).

        Without input dropout the first Linear and activation are deterministic,
        so they run once on (N, ·) before the batch is repeated T times.
        """
        h = self.drop_in(self.normalizer.x(x.flatten(1)))
        first = 0 if self.input_dropout else 2  # trunk = [Linear, act, MCDropout, ...]
        h = self.trunk[:first](h).repeat(t, 1)  # (T·N, ·); row t·N + n is input n
        return self.head(self.trunk[first:](h)).view(t, len(x), -1)


def build(params: MCDropoutParams, info: DataInfo) -> MCDropoutNet:
    return MCDropoutNet(params, info)


def loss(module: MCDropoutNet, x: Tensor, y: Tensor) -> Tensor:
    """One stochastic pass: Kendall & Gal's loss, ½‖y-ŷ‖² (unit-precision NLL), or cross-entropy."""
    out = module(x)
    if module.task == "classification":
        return F.cross_entropy(out, y)
    y = module.normalizer.y(y)
    if module.heteroscedastic:
        d = module.target_dim
        return heteroscedastic_loss(y, out[:, :d], out[:, d:], module.nll_beta)
    return 0.5 * (y - out).pow(2).sum(-1).mean()


def raw_moments(module: MCDropoutNet, out: Tensor) -> tuple[Tensor, Tensor]:
    """Head outputs (T, N, K) -> per-pass means and noise variances (T, N, D) in raw units."""
    d, norm = module.target_dim, module.normalizer
    means = norm.y_raw(out[..., :d])
    if module.heteroscedastic:
        return means, out[..., d:].exp() * norm.y_std**2
    return means, (norm.y_std**2 / module.tau).expand_as(means)


def evaluate(
    module: MCDropoutNet, x: Tensor, y: Tensor, split: str, t: int, fit_tau: bool = False
) -> dict[str, float]:
    """MC metrics over T passes: predictive NLL as ``{split}_loss``, accuracy or RMSE, ll (raw)."""
    out = module.passes(x, t)  # (T, N, K)
    if module.task == "classification":
        return sampled_classification_metrics(out, y, split)
    if fit_tau:
        module.tau.fill_(best_tau(out[..., : module.target_dim], module.normalizer.y(y)))
    return sampled_regression_metrics(y, *raw_moments(module, out), split)


def make_optimizer(
    module: MCDropoutNet, params: MCDropoutParams, n_train: int, ctx: Context
) -> torch.optim.Optimizer:
    """The optimizer; with ``tau`` given, weight decay from τ (torch's wd = 2λ, see module doc)."""
    if params.tau is None:
        opt = ctx.make_optimizer(module.parameters())
        lam = opt.param_groups[0]["weight_decay"] / 2
        module.tau.fill_(model_precision(params.length_scale, params.dropout, n_train, lam))
        return opt
    lam = weight_decay_for_precision(params.length_scale, params.dropout, n_train, params.tau)
    lam_plain = weight_decay_for_precision(params.length_scale, 0.0, n_train, params.tau)
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]  # first layer first
    dropped = [m.weight for i, m in enumerate(linears) if i > 0 or params.input_dropout]
    kept = {id(p) for p in dropped}
    plain = [p for p in module.parameters() if id(p) not in kept]
    module.tau.fill_(params.tau)
    groups = [
        {"params": dropped, "weight_decay": 2 * lam},
        {"params": plain, "weight_decay": 2 * lam_plain},
    ]
    return ctx.make_optimizer(groups, weight_decay=2 * lam)


def fit(module: nn.Module, data: Dataset, params: MCDropoutParams, ctx: Context) -> None:
    assert isinstance(module, MCDropoutNet)
    dev, t = ctx.device, params.mc_samples_eval
    module.to(dev)
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    x_val, y_val = data.x_val.to(dev), data.y_val.to(dev)
    module.normalizer.fit(x.flatten(1), y if module.task == "regression" else None)
    opt = make_optimizer(module, params, data.info.n_train, ctx)
    fit_tau = params.tau is None and module.task == "regression" and not module.heteroscedastic

    def validate() -> dict[str, float]:
        metrics = evaluate(module, x_val, y_val, "val", t, fit_tau=fit_tau)
        tau = float(module.tau)
        return {**metrics, "tau": tau} if math.isfinite(tau) else metrics

    finished = train_epochs(
        module, opt, x, y, ctx, loss_fn=lambda xb, yb: loss(module, xb, yb), evaluate=validate
    )
    if finished:
        final_test(
            module,
            ctx,
            lambda: evaluate(module, data.x_test.to(dev), data.y_test.to(dev), "test", t),
        )


@torch.no_grad()
def predict(module: nn.Module, x: Tensor, mc_samples: int = 50) -> dict[str, Tensor]:
    """T = ``mc_samples`` passes in one batched forward, summarised in raw units.

    Regression: mean, epistemic_var, aleatoric_var (mean σ², or 1/τ homoscedastic),
    total_var, each (N, D). Classification: probs (N, C), predictive_entropy,
    expected_entropy, mutual_information (N,).
    """
    assert isinstance(module, MCDropoutNet)
    module.eval()
    out = module.passes(x.to(module.tau.device), max(1, mc_samples))
    if module.task == "classification":
        return classification_summary(out.softmax(-1))
    return regression_summary(*raw_moments(module, out))


FAMILY = Family(
    name="mc_dropout",
    description="MC dropout: dropout at inference, heteroscedastic head, model precision τ",
    params=MCDropoutParams,
    datasets=PREDICTIVE_DATASETS,
    capabilities={Capability.PREDICT: predict},
    build=build,
    fit=fit,
    default_epochs=200,
    default_mc_samples=100,
)
