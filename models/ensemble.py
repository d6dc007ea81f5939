"""``ensemble``: deep ensembles, M networks trained independently and averaged.

Lakshminarayanan, Pritzel & Blundell 2017 ("Simple and scalable predictive
uncertainty estimation using deep ensembles"): train M networks on the whole
training set, each from its own random initialisation and with its own random
minibatch order, with a proper scoring rule (the Gaussian NLL for regression,
cross-entropy for classification), optionally on fast-gradient-sign adversarial
examples too; predict with the uniformly weighted mixture of the members.

- Vectorised members: every layer is a ``BatchedLinear`` holding all M weight
  matrices as one (M, in, out) tensor applied with ``torch.baddbmm``, so one
  forward computes all members, (M, N, in) -> (M, N, K), and the optimizer sees
  ordinary tensors. Each member's slice is initialised like ``nn.Linear``, by its
  own draw from the seeded RNG.
- The loss is the *sum* over members of each member's own batch-mean loss. Member
  m's loss depends only on member m's slice of every weight, so its gradient is
  exactly what it would get trained alone, and every optimizer in ``models.optim``
  is elementwise: one optimizer on the stacked tensors is M independent ones.
  ``train_loss`` is therefore logged as that sum (M times a member's mean loss).
- Minibatches: the shared loop (``train_epochs``) draws a random partition of
  positions 0..N-1 each epoch; each member also draws its own permutation π_m per
  epoch and trains on examples π_m[positions], so each member sees every example
  once an epoch in its own random order (the paper's "random shuffling"), at the
  cost of one gather per step. Bootstrap resampling is not offered: the paper
  found it worse than the whole data per member (§2.4).
- Adversarial training (§2.3, Goodfellow et al. 2015): with ``adversarial_eps`` ε
  > 0, each member also trains on ``x' = x + ε sign(∇_x ℓ_m(x, y))``, its own
  adversarial batch, with loss ``ℓ_m(x) + ℓ_m(x')``. ε is in standardised input
  units (the paper's 1% of each input's range is about 0.04 of a standard deviation).
- ``dropout`` p > 0: ``nn.Dropout`` after each hidden activation, one mask per member
  and example, while training only; inference is deterministic (not MC dropout).
- Mixture (§2.4): ``μ* = (1/M) Σ μ_m``, ``σ*² = (1/M) Σ (σ_m² + μ_m²) − μ*²``,
  which is ``regression_summary``'s epistemic (variance of the μ_m) plus aleatoric
  (mean σ_m²). A homoscedastic ensemble (``heteroscedastic=false``) shares one noise
  variance fitted on the validation split after every epoch, the σ² maximising the
  mixture log-likelihood (``uncertainty.best_tau``'s grid). Classification averages
  the members' softmax probabilities (``classification_summary``).
- Metrics: ``val_ll``/``test_ll`` are the mixture's log-likelihood
  ``log (1/M) Σ_m N(y; μ_m, σ_m²)`` (the paper scores a Gaussian with the mixture's
  moments instead), RMSE of μ*, both in raw units; classification logs the NLL and
  accuracy of the averaged probabilities.

Checkpoint ``state["model"]`` keys: ``normalizer.{x_mean,x_std,y_mean,y_std}``,
``trunk.{i}.{weight,bias}`` for the ``BatchedLinear`` layers (i = 0, 2, ... without dropout;
0, 3, ... with it) and ``head.{weight,bias}`` with weights (M, in, out)
and biases (M, 1, out) (head: means then log variances when heteroscedastic), and
``noise_var`` (target_dim,), raw units, for homoscedastic regression only.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from models.data import PREDICTIVE_DATASETS, DataInfo, Dataset
from models.family import Capability, Context, Family, Params
from models.layers import (
    ACTIVATIONS,
    ActivationName,
    Hidden,
    Normalizer,
    head_width,
)
from models.loop import final_test, train_epochs
from models.uncertainty import (
    best_tau,
    classification_summary,
    heteroscedastic_loss,
    regression_summary,
    sampled_classification_metrics,
    sampled_regression_metrics,
)


class EnsembleParams(Params):
    members: int = Field(5, ge=1, le=32, description="ensemble size M (1: a single network)")
    hidden: Hidden = Field(
        default_factory=lambda: [64, 64],
        description="hidden layer widths of every member (1-8 layers of 1-4096 units)",
    )
    # GELU by default: far more epistemic variance in sine_gap's gap than tanh or ReLU, at
    # equal test RMSE (docs/benchmarks.md, "Tuning history")
    activation: ActivationName = Field(
        "gelu", description="nonlinearity after each hidden layer (gelu: see the comment)"
    )
    heteroscedastic: bool = Field(
        True, description="regression: each member predicts log σ² too (ignored for classification)"
    )
    nll_beta: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="heteroscedastic regression: β of β-NLL (Seitzer et al. 2022), each "
        "point's NLL weighted by stop-gradient(σ²)^β; 0: the plain NLL",
    )
    adversarial_eps: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="fast-gradient-sign step ε in standardised input units; 0: no adversarial "
        "training",
    )
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="dropout after each hidden layer while training, as a regulariser (off "
        "at inference: the members stay deterministic)",
    )


class BatchedLinear(nn.Module):
    """M independent linear maps in one op: (M, N, in) -> (M, N, out)."""

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))  # x @ W, not W x
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim))
        bound = 1 / math.sqrt(in_dim)  # nn.Linear's default init, one draw per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, h: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, h, self.weight)

    def extra_repr(self) -> str:
        m, i, o = self.weight.shape
        return f"members={m}, in_features={i}, out_features={o}"


class EnsembleNet(nn.Module):
    """Raw inputs (N, *input_shape) -> every member's head outputs (M, N, K)."""

    noise_var: Tensor

    def __init__(self, params: EnsembleParams, info: DataInfo) -> None:
        super().__init__()
        self.task = info.task
        self.members = params.members
        self.target_dim = info.target_dim
        self.heteroscedastic = params.heteroscedastic and info.task == "regression"
        self.nll_beta = params.nll_beta
        in_dim = math.prod(info.input_shape)
        out_dim = head_width(info, self.heteroscedastic)
        self.normalizer = Normalizer(in_dim, info.target_dim)
        layers: list[nn.Module] = []
        width = in_dim
        for h in params.hidden:
            layers += [BatchedLinear(self.members, width, h), ACTIVATIONS[params.activation]()]
            if params.dropout > 0:  # one mask per member and example (the (M, B, h) tensor)
                layers.append(nn.Dropout(params.dropout))
            width = h
        self.trunk = nn.Sequential(*layers)
        self.head = BatchedLinear(self.members, width, out_dim)
        if info.task == "regression" and not self.heteroscedastic:
            # the members' shared noise variance, raw units, fitted on the validation split
            self.register_buffer("noise_var", torch.ones(info.target_dim))

    def forward(self, x: Tensor) -> Tensor:
        h = self.normalizer.x(x.flatten(1))  # (N, D)
        return self.members_forward(h.expand(self.members, *h.shape))

    def members_forward(self, h: Tensor) -> Tensor:
        """Standardised inputs, one batch per member: (M, B, D) -> (M, B, K)."""
        return self.head(self.trunk(h))


def build(params: EnsembleParams, info: DataInfo) -> EnsembleNet:
    return EnsembleNet(params, info)


def member_losses(module: EnsembleNet, h: Tensor, y: Tensor) -> Tensor:
    """Each member's batch-mean loss: h (M, B, D) standardised, y (M, B, ·) -> (M,).

    Kendall & Gal's heteroscedastic NLL, ½‖y-ŷ‖² (unit-precision NLL) or cross-entropy;
    ``vmap`` maps the single-network loss over the member axis.
    """
    out = module.members_forward(h)
    if module.task == "classification":
        return torch.vmap(F.cross_entropy)(out, y)
    y = module.normalizer.y(y)
    if module.heteroscedastic:
        d = module.target_dim
        hetero = partial(heteroscedastic_loss, beta=module.nll_beta)
        return torch.vmap(hetero)(y, out[..., :d], out[..., d:])
    return 0.5 * (y - out).pow(2).sum(-1).mean(-1)


def loss(module: EnsembleNet, x: Tensor, y: Tensor, adversarial_eps: float = 0.0) -> Tensor:
    """The training objective: Σ_m ℓ_m(x_m), plus Σ_m ℓ_m(x_m') with FGSM examples.

    x (M, B, *input_shape) raw and y (M, B, ·): member m's own batch in row m.
    """
    h = module.normalizer.x(x.flatten(2))
    if adversarial_eps == 0:
        return member_losses(module, h, y).sum()
    h = h.detach().requires_grad_(True)
    clean = member_losses(module, h, y).sum()
    # ∂(Σ_m ℓ_m)/∂h_m = ∂ℓ_m/∂h_m: one backward gives every member its own direction
    (grad,) = torch.autograd.grad(clean, h, retain_graph=True)
    adversarial = member_losses(module, (h + adversarial_eps * grad.sign()).detach(), y)
    return clean + adversarial.sum()


class MemberOrder:
    """Each member's own shuffle: for the loop's batch of positions, member m trains on
    examples ``perm[m, positions]``, with ``perm`` redrawn each epoch from ``generator``."""

    def __init__(self, n: int, members: int, generator: torch.Generator) -> None:
        self.n, self.members, self.generator = n, members, generator
        # (M, N); drawn at an epoch's first batch, after the loop's own partition, so that a
        # resumed run (RNG restored at the checkpoint) draws both in the uninterrupted order
        self.perm: Tensor | None = None

    def __call__(self, positions: Tensor) -> Tensor:
        if self.perm is None:
            perms = [torch.randperm(self.n, generator=self.generator) for _ in range(self.members)]
            self.perm = torch.stack(perms).to(positions.device)
        return self.perm[:, positions]  # (M, B)

    def new_epoch(self) -> None:
        self.perm = None


def raw_moments(module: EnsembleNet, out: Tensor) -> tuple[Tensor, Tensor]:
    """Head outputs (M, N, K) -> member means and noise variances (M, N, D), raw units."""
    d, norm = module.target_dim, module.normalizer
    means = norm.y_raw(out[..., :d])
    if module.heteroscedastic:
        return means, out[..., d:].exp() * norm.y_std**2
    return means, module.noise_var.expand_as(means)


def evaluate(
    module: EnsembleNet, x: Tensor, y: Tensor, split: str, fit_noise: bool = False
) -> dict[str, float]:
    """Mixture metrics: predictive NLL as ``{split}_loss``, accuracy or RMSE, ll (raw units)."""
    out = module(x)  # (M, N, K)
    if module.task == "classification":
        return sampled_classification_metrics(out, y, split)
    if fit_noise:
        tau = best_tau(out[..., : module.target_dim], module.normalizer.y(y))
        module.noise_var.copy_(module.normalizer.y_std**2 / tau)
    return sampled_regression_metrics(y, *raw_moments(module, out), split)


def fit(module: nn.Module, data: Dataset, params: EnsembleParams, ctx: Context) -> None:
    assert isinstance(module, EnsembleNet)
    dev = ctx.device
    module.to(dev)
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    x_val, y_val = data.x_val.to(dev), data.y_val.to(dev)
    module.normalizer.fit(x.flatten(1), y if module.task == "regression" else None)
    opt = ctx.make_optimizer(module.parameters())
    fit_noise = module.task == "regression" and not module.heteroscedastic
    order = MemberOrder(len(x), module.members, ctx.generator)

    def member_batch_loss(positions: Tensor, _: Tensor) -> Tensor:
        idx = order(positions)  # (M, B)
        return loss(module, x[idx], y[idx], params.adversarial_eps)

    def validate() -> dict[str, float]:
        order.new_epoch()  # called once at the end of every epoch
        metrics = evaluate(module, x_val, y_val, "val", fit_noise=fit_noise)
        if fit_noise:  # the fitted noise variance, raw units (the mean over target dims)
            metrics["noise_var"] = float(module.noise_var.mean())
        return metrics

    # the loop partitions positions 0..N-1; MemberOrder maps them to each member's examples
    positions = torch.arange(len(x), device=dev)
    finished = train_epochs(
        module, opt, positions, positions, ctx, loss_fn=member_batch_loss, evaluate=validate
    )
    if finished:
        final_test(
            module, ctx, lambda: evaluate(module, data.x_test.to(dev), data.y_test.to(dev), "test")
        )


@torch.no_grad()
def predict(module: nn.Module, x: Tensor, mc_samples: int = 1) -> dict[str, Tensor]:
    """The M-member mixture in one batched forward, raw units; ``mc_samples`` is ignored
    (the members are the samples, all M always used).

    Regression: mean, epistemic_var (variance of member means), aleatoric_var (mean σ²,
    or the fitted noise variance), total_var, each (N, D). Classification: probs (N, C),
    predictive_entropy, expected_entropy, mutual_information (N,).
    """
    assert isinstance(module, EnsembleNet)
    module.eval()
    out = module(x.to(module.normalizer.x_mean.device))  # (M, N, K)
    if module.task == "classification":
        return classification_summary(out.softmax(-1))
    return regression_summary(*raw_moments(module, out))


def passes(module: nn.Module, mc_samples: int) -> int:
    """The samples predict averages whatever T a request asks: the M members."""
    assert isinstance(module, EnsembleNet)
    return module.members


FAMILY = Family(
    name="ensemble",
    description="deep ensemble: M independently initialised networks trained at once, mixed",
    params=EnsembleParams,
    datasets=PREDICTIVE_DATASETS,
    capabilities={Capability.PREDICT: predict},
    build=build,
    fit=fit,
    default_epochs=200,
    mc_passes=passes,
)
