"""``rbm``: the Bernoulli-Bernoulli restricted Boltzmann machine (Hinton 2002, "Training
products of experts by minimizing contrastive divergence"; persistent CD: Tieleman 2008,
"Training restricted Boltzmann machines using approximations to the likelihood gradient").

An energy-based model of binary x with binary latent h (the notes, §5):

    E(x, h) = −xᵀWh − bᵀx − cᵀh,    p(x) = exp(−F(x)) / Z,
    F(x) = −bᵀx − Σ_j softplus(c_j + xᵀW_j),

p(h_j = 1 | x) = σ(c_j + xᵀW_j), p(x_i = 1 | h) = σ(b_i + W_i h). The log-likelihood
gradient is −∂F(x)/∂θ + E_model[∂F/∂θ]; CD-k (``cd_k``) estimates the model term from k
Gibbs sweeps started at the data, PCD (``persistent``) from ``chains`` persistent chains
carried across updates. Training minimises the surrogate F(data) − F(negatives) (negatives
detached) + ``weight_decay``/2 ‖W‖², whose gradient is the negated CD gradient, with the
shared loop and the job's optimizer (momentum is the optimizer's); ``lr_decay: linear``
takes its rate linearly to 0 over the job, as Tieleman 2008 does for PCD (PCD's default).

Monitoring, labelled as what it is: ``*_recon_error`` (mean squared error of the mean-field
reconstruction σ(b + W σ(c + Wᵀx))) and ``*_pseudo_nll`` (−Σ_i log p(x_i | x_−i), the
negative log pseudo-likelihood, exact over all i; validation's on its first
``VAL_PSEUDO_ROWS`` rows); ``*_nll`` is the true negative log-likelihood F(x) + log Z, with
log Z exact when the smaller layer has ≤ 20 units (enumeration, ``models/energy.py``), else
AIS (Salakhutdinov & Murray 2008; ``ais_runs``, ``ais_betas``, by default 20 per hidden
unit; an estimate with a standard error). Sampling runs ``gibbs_steps`` sweeps of
block Gibbs chains from uniform noise (same seed, same samples).

Checkpoint ``state["model"]`` keys: ``W`` (D, H), ``b`` (D), ``c`` (H), ``base_bias`` (D,
the train split's marginal logits: AIS's base model), ``chain`` (chains, D: the persistent
chains), ``log_z``, ``log_z_stderr`` (0-d float64: the last log Z computed for these weights,
0 before; its standard error, 0 when exact, −1 before). The final test computes it for the
served weights and writes the served checkpoint again with it (``final_test(keep=True)``), so
log-prob requests read it; a checkpoint without one (a best one before the final test)
computes it on its first request, if its AIS is within ``AIS_REQUEST_WORK`` multiply-adds
(else 409). The final test's AIS is bounded by ``AIS_MAX_WORK`` (at build).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from models.data import DataInfo, Dataset
from models.energy import (
    AisSchedule,
    KeptLogZ,
    rbm_enumerable,
    rbm_free_energy,
    rbm_log_z_ais,
    rbm_log_z_exact,
)
from models.family import (
    Capability,
    Chain,
    Context,
    Family,
    LikelihoodKind,
    LikelihoodReport,
    Params,
)
from models.generative import LogProb, NotAnswerable, OptionError, SampleOptions, bits_per_dim
from models.loop import Budget, batch_count, final_test, train_epochs

DATASETS = frozenset({"digits_bin", "mnist5k_bin", "bars_stripes"})
AIS_SEED = 0  # the AIS runs of a final test and of log-prob draw from this seed


class RBMParams(Params):
    hidden: int = Field(64, ge=1, le=4096, description="hidden units H")
    cd_k: int = Field(1, ge=1, le=1000, description="Gibbs sweeps of each CD-k / PCD update")
    persistent: bool = Field(
        False,
        description="persistent CD (Tieleman 2008): negatives from chains kept between updates",
    )
    chains: int = Field(
        100, ge=1, le=10_000, description="persistent chains (PCD; CD starts at the batch)"
    )
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="L2 penalty on W: λ/2 ‖W‖²")
    lr_decay: Literal["constant", "linear"] | None = Field(
        None,
        description="the optimizer's learning rate through the job: constant, or falling "
        "linearly to 0 at the last step (Tieleman 2008); null: linear with persistent, "
        "constant with CD",
    )
    gibbs_steps: int = Field(
        1000, ge=1, le=100_000, description="Gibbs sweeps of each chain that draws samples"
    )
    ais_runs: int = Field(
        100, ge=2, le=100_000, description="AIS runs when log Z cannot be enumerated"
    )
    ais_betas: int | None = Field(
        None,
        ge=2,
        le=1_000_000,
        description="AIS inverse temperatures from 0 to 1; none: 20 per hidden unit, at "
        "least 1,000, at most what AIS_MAX_WORK allows",
    )
    ais_schedule: AisSchedule = Field(
        "linear",
        description="AIS temperatures: evenly spaced (linear), or denser towards 1 in "
        "Salakhutdinov & Murray's proportions (sm08)",
    )


# multiply-adds of one AIS estimate (runs x betas x 2 x D x H): the final test's bound, about
# 13 CPU minutes on one thread of the dev machine (13e9 a second in float64), 9x
# Salakhutdinov & Murray's 100 runs x 14,500 betas on 784 x 500; and the bound on a request
# that has to run one (a checkpoint before its final test), the inference routes' work bound
AIS_MAX_WORK = 10**13
AIS_REQUEST_WORK = 10**11
# the default AIS: temperatures per hidden unit, and the least. On 784 x 500 RBMs
# (docs/benchmarks.md) 10,000 came within 1 nat of 20,000 on a model trained at a constant
# Adam rate (1,000 fell 22 short), and 0.7 on a linearly decayed one (1,000: within 2.4 of
# 10,000 on three); the need grows with the model (the path's length), so the default does
AIS_BETAS_PER_HIDDEN = 20
AIS_MIN_BETAS = 1_000


# validation's pseudo-NLL (each epoch) is over this many rows: it costs D x H softplus a row,
# 1.2 CPU s for the 500 of mnist5k_bin at 500 hidden units, three times the epoch's training
VAL_PSEUDO_ROWS = 100


class RBM(KeptLogZ):
    """The RBM: free energy, conditionals, Gibbs sweeps, log Z."""

    base_bias: Tensor
    chain: Tensor

    def __init__(self, params: RBMParams, info: DataInfo) -> None:
        super().__init__()
        if info.levels != 2:
            raise ValueError(f"rbm models binary data; {info.name} is not binary")
        self.params, self.info = params, info
        self.d = d = math.prod(info.input_shape)
        h = params.hidden
        # AIS runs at the final test (and on a request to a checkpoint without its log Z):
        # two (runs, D) x (D, H) products per inverse temperature
        work = self.ais_work
        if not rbm_enumerable(d, h) and work > AIS_MAX_WORK:
            raise ValueError(
                f"ais_runs x ais_betas x 2 x {d} visible x {h} hidden = {work:.2g} "
                f"multiply-adds, over {AIS_MAX_WORK:.0e}: fewer ais_runs or ais_betas"
            )
        self.W = nn.Parameter(torch.randn(d, h) * 0.01)
        self.b = nn.Parameter(torch.zeros(d))
        self.c = nn.Parameter(torch.zeros(h))
        self.register_buffer("base_bias", torch.zeros(d))
        self.register_buffer("chain", torch.zeros(params.chains, d))

    @property
    def exact(self) -> bool:
        return rbm_enumerable(self.d, self.params.hidden)

    @property
    def ais_betas(self) -> int:
        """The AIS temperatures: ``params.ais_betas``, else ``AIS_BETAS_PER_HIDDEN`` per hidden
        unit, at least ``AIS_MIN_BETAS``, at most what ``AIS_MAX_WORK`` allows."""
        p = self.params
        if p.ais_betas is not None:
            return p.ais_betas
        most = AIS_MAX_WORK // (2 * p.ais_runs * self.d * p.hidden)
        return max(2, min(max(AIS_MIN_BETAS, AIS_BETAS_PER_HIDDEN * p.hidden), most))

    @property
    def ais_work(self) -> int:
        """Multiply-adds of one AIS estimate: runs x betas x 2 x D x H."""
        p = self.params
        return 2 * p.ais_runs * self.ais_betas * self.d * p.hidden

    def free_energy(self, x: Tensor) -> Tensor:
        return rbm_free_energy(x, self.W, self.b, self.c)

    def p_h(self, x: Tensor) -> Tensor:
        """p(h_j = 1 | x) (N, H)."""
        return torch.sigmoid(torch.addmm(self.c, x, self.W))

    def p_x(self, h: Tensor) -> Tensor:
        """p(x_i = 1 | h) (N, D)."""
        return torch.sigmoid(torch.addmm(self.b, h, self.W.T))

    @torch.no_grad()
    def gibbs(self, x: Tensor, steps: int, gen: torch.Generator) -> Tensor:
        """``steps`` block Gibbs sweeps x -> h -> x from x (binary samples)."""
        for _ in range(steps):
            h = bernoulli(self.p_h(x), gen)
            x = bernoulli(self.p_x(h), gen)
        return x

    def compute_log_z(self) -> tuple[float, float]:
        """(log Z, standard error): exact by enumeration (error 0), else AIS."""
        with torch.no_grad():
            if self.exact:
                return rbm_log_z_exact(self.W, self.b, self.c), 0.0
            gen = torch.Generator(device=self.W.device).manual_seed(AIS_SEED)
            p = self.params
            args = (self.W, self.b, self.c, self.base_bias, p.ais_runs, self.ais_betas, gen)
            return rbm_log_z_ais(*args, schedule=p.ais_schedule)

    def log_prob(self, x: Tensor, log_z: float) -> Tensor:
        return -self.free_energy(x).double() - log_z

    def pseudo_nll(self, x: Tensor) -> Tensor:
        """−Σ_i log p(x_i | x_−i) per row: log σ(F(x with i flipped) − F(x)), every i."""
        out = []
        for xb in x.split(16):
            a = self.c + xb @ self.W  # (B, H)
            s = 1 - 2 * xb  # +1 where a bit turns on when flipped
            a_flip = a[:, None, :] + s[:, :, None] * self.W[None]  # (B, D, H)
            f = -(xb @ self.b)[:, None] - s * self.b - F.softplus(a_flip).sum(-1)  # F(flipped)
            f0 = self.free_energy(xb)[:, None]
            out.append(-F.logsigmoid(f - f0).sum(-1))
        return torch.cat(out)

    def recon_error(self, x: Tensor) -> Tensor:
        """Mean squared error of the mean-field reconstruction, per row."""
        return ((self.p_x(self.p_h(x)) - x) ** 2).mean(-1)


def bernoulli(p: Tensor, gen: torch.Generator) -> Tensor:
    """Binary draws with probabilities p, from ``gen`` (drawn where it lives, moved to p)."""
    u = torch.rand(p.shape, generator=gen, device=gen.device, dtype=p.dtype).to(p.device)
    return (u < p).to(p.dtype)


def build(params: RBMParams, info: DataInfo) -> RBM:
    """The model; non-binary data raises ``ValueError`` (the API's 422)."""
    return RBM(params, info)


# --- training -------------------------------------------------------------------------------


class CDSurrogate(torch.autograd.Function):
    """``cd_loss``'s surrogate F̄(x) − F̄(neg) + λ/2 ‖W‖² (F̄ the mean over rows) with its
    gradient in closed form, from ∂F(x)/∂W = −x p(h|x)ᵀ, ∂F/∂b = −x, ∂F/∂c = −p(h|x)
    (Hinton 2002, §2): one backward node; autograd through the two free energies took
    150 µs of a 390 µs step at 64 × 16 (batch 32), this 90."""

    @staticmethod
    def forward(
        ctx: Any, W: Tensor, b: Tensor, c: Tensor, x: Tensor, neg: Tensor, weight_decay: float
    ) -> Tensor:
        a_x, a_neg = torch.addmm(c, x, W), torch.addmm(c, neg, W)  # (B, H), (N, H)
        grad_b = neg.mean(0) - x.mean(0)
        ctx.save_for_backward(W, x, neg, a_x, a_neg, grad_b)
        ctx.weight_decay = weight_decay
        loss = grad_b @ b + F.softplus(a_neg).sum() / len(neg) - F.softplus(a_x).sum() / len(x)
        if weight_decay:
            loss = loss + 0.5 * weight_decay * W.pow(2).sum()
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        W, x, neg, a_x, a_neg, grad_b = ctx.saved_tensors
        p_x, p_neg = torch.sigmoid(a_x), torch.sigmoid(a_neg)  # p(h = 1 | ·)
        # negᵀ p(h|neg) / N − xᵀ p(h|x) / B (+ λ W)
        grad_W = torch.addmm(neg.T @ p_neg, x.T, p_x, beta=1 / len(neg), alpha=-1 / len(x))
        if ctx.weight_decay:
            grad_W.add_(W, alpha=ctx.weight_decay)
        grad_c = p_neg.mean(0) - p_x.mean(0)
        return grad_W * grad, grad_b * grad, grad_c * grad, None, None, None


def cd_loss(module: RBM, x: Tensor, gen: torch.Generator) -> Tensor:
    """The CD-k / PCD surrogate: F(x) − F(negatives), averaged, + λ/2 ‖W‖²; its gradient is
    minus the CD estimate of the log-likelihood gradient. PCD advances ``module.chain``."""
    p = module.params
    start = module.chain if p.persistent else x
    neg = module.gibbs(start, p.cd_k, gen)
    if p.persistent:
        module.chain.copy_(neg)
    return CDSurrogate.apply(module.W, module.b, module.c, x, neg, p.weight_decay)


def evaluate(module: RBM, data: Dataset, split: str, log_z: float | None) -> dict[str, float]:
    """Reconstruction error and negative log pseudo-likelihood on the split (labelled as
    such; validation's on its first ``VAL_PSEUDO_ROWS`` rows); the NLL (nats) and bits per
    dimension when ``log_z`` is given. ``*_loss``: the NLL when given, else the pseudo-NLL."""
    x = (data.x_val if split == "val" else data.x_test).to(module.W.device).flatten(1)
    recon = float(torch.cat([module.recon_error(xb) for xb in x.split(512)]).mean())
    pseudo = float(module.pseudo_nll(x[:VAL_PSEUDO_ROWS] if split == "val" else x).mean())
    out = {f"{split}_recon_error": recon, f"{split}_pseudo_nll": pseudo, f"{split}_loss": pseudo}
    if log_z is not None:
        log_p = torch.cat([module.log_prob(xb, log_z) for xb in x.split(512)])
        nll = float(-log_p.mean())
        out |= {
            f"{split}_nll": nll,
            f"{split}_loss": nll,
            f"{split}_bits_per_dim": float(bits_per_dim(log_p, data.info).mean()),
        }
    return out


def test_metrics(module: RBM, data: Dataset) -> dict[str, float]:
    """The test split's metrics with log Z computed (exact or AIS) and kept in the module."""
    log_z, stderr = module.store_log_z()
    out = evaluate(module, data, "test", log_z)
    out |= {
        "test_log_z": log_z,
        "test_nll_stderr": stderr,  # log Z's error is every test example's
        "test_ais_runs": 0.0 if module.exact else float(module.params.ais_runs),
        "test_ais_betas": 0.0 if module.exact else float(module.ais_betas),
    }
    return out


def fit(module: nn.Module, data: Dataset, params: RBMParams, ctx: Context) -> None:
    assert isinstance(module, RBM)
    dev = ctx.device
    module.to(dev)
    x, y = data.x_train.to(dev).flatten(1), data.y_train.to(dev)
    if ctx.resume is None:
        mean = x.mean(0).clamp(1e-3, 1 - 1e-3)
        module.base_bias.copy_(torch.log(mean) - torch.log1p(-mean))
        with torch.no_grad():
            module.b.copy_(module.base_bias)  # the usual start: visible biases at the marginals
        module.chain.copy_(bernoulli(mean.expand(params.chains, -1), ctx.generator))
    opt = ctx.make_optimizer(module.parameters())
    rates = [group["lr"] for group in opt.param_groups]  # the job's, before a resume's
    total = Budget.of(ctx).total_steps(batch_count(len(x), ctx.batch_size))
    done = [0 if ctx.resume is None else int(ctx.resume.get("step", 0))]  # optimizer steps
    # PCD's negatives are a moving estimate: at a constant rate the last weights sit wherever
    # the noisy updates left them (seeds 34 nats apart on mnist5k_bin, docs/benchmarks.md)
    decay = params.lr_decay or ("linear" if params.persistent else "constant")

    def loss_fn(xb: Tensor, _: Tensor) -> Tensor:
        if decay == "linear":  # η (1 − t/T) at step t of T
            for group, lr in zip(opt.param_groups, rates, strict=True):
                group["lr"] = lr * max(0.0, 1 - done[0] / total)
        done[0] += 1
        return cd_loss(module, xb, ctx.generator)

    def validate() -> dict[str, float]:
        if not module.exact:
            return evaluate(module, data, "val", None)
        # float32 enumeration each epoch (monitoring, checkpoint choice); float64 at the end
        log_z = rbm_log_z_exact(module.W, module.b, module.c, torch.float32)
        return evaluate(module, data, "val", log_z)

    finished = train_epochs(
        module, opt, x, y, ctx,
        loss_fn=loss_fn,
        evaluate=validate,
    )  # fmt: skip
    if finished:
        # the served checkpoint keeps the test's log Z: log-prob never recomputes it
        final_test(module, ctx, lambda: test_metrics(module, data), keep=True)


# --- inference ------------------------------------------------------------------------------


def sample(module: nn.Module, opts: SampleOptions) -> Tensor:
    """n samples: ``opts.steps`` (else ``gibbs_steps``) block Gibbs sweeps of n chains from
    uniform noise, seeded by ``opts.seed``: the last state of ``chain``."""
    assert isinstance(module, RBM)
    steps = module.params.gibbs_steps if opts.steps is None else opts.steps
    return chain(module, opts, [steps])[0]


def chain(module: nn.Module, opts: SampleOptions, at: Sequence[int]) -> Tensor:
    """The states (len(at), n, *input_shape) of n block Gibbs chains x -> h -> x after each
    sweep count of ``at`` (ascending; 0: the start, uniform noise), seeded by ``opts.seed``;
    ``temperature`` divides the energy (1: the model). A state does not depend on the
    counts before it: ``at = [s]`` is ``sample`` with ``steps = s``."""
    assert isinstance(module, RBM)
    if opts.label is not None:
        raise OptionError("label", "rbm models are unconditional: leave label out")
    if opts.temperature <= 0:
        raise OptionError("temperature", "temperature must be positive")
    rows = opts.n * at[-1]
    if opts.max_rows is not None and rows > opts.max_rows:
        most = opts.max_rows // max(at[-1], 1)
        raise OptionError("n", f"{opts.n} samples take {rows} Gibbs rows; at most {most}")
    module.eval()
    dev = module.W.device
    gen = opts.generator(dev)
    t = opts.temperature
    frames, done = [], 0
    with torch.no_grad():
        x = bernoulli(torch.full((opts.n, module.d), 0.5, device=dev), gen)
        for target in at:
            for _ in range(target - done):
                h = bernoulli(torch.sigmoid((module.c + x @ module.W) / t), gen)
                x = bernoulli(torch.sigmoid((module.b + h @ module.W.T) / t), gen)
            frames.append(x)
            done = target
    return torch.stack(frames).view(len(at), opts.n, *module.info.input_shape)


def filters(module: nn.Module) -> Tensor:
    """Each hidden unit's weights W[:, j] in the input's shape (H, *input_shape)."""
    assert isinstance(module, RBM)
    return module.W.detach().T.reshape(module.params.hidden, *module.info.input_shape)


def default_sweeps(module: nn.Module) -> int:
    """The sweeps of a sample when a request sets none: ``gibbs_steps``."""
    assert isinstance(module, RBM)
    return module.params.gibbs_steps


def log_prob(module: nn.Module, x: Tensor, labels: Tensor | None, k: int) -> LogProb:
    """log P(x) = −F(x) − log Z: exact when the smaller layer has ≤ 20 units; else with
    an AIS log Z (``exact`` false, ``k`` its runs, seed 0). The log Z is the one the final
    test computed, which the served checkpoint keeps; a checkpoint without one (a job's best
    before its final test) computes it at the first request and keeps it in the module's
    buffers, an AIS over ``AIS_REQUEST_WORK`` refused (409). ``k`` is unused."""
    assert isinstance(module, RBM)
    if labels is not None:
        raise OptionError("labels", "rbm models are unconditional: leave labels out")
    module.eval()
    x = x.to(module.W.device, module.W.dtype).flatten(1)
    if bool(((x != 0) & (x != 1)).any()):
        raise OptionError("inputs", f"{module.info.name} is binary: values are 0 or 1")
    log_z = module.kept_log_z()
    if log_z is None and not module.exact and module.ais_work > AIS_REQUEST_WORK:
        raise NotAnswerable(
            f"this checkpoint has no log Z yet (its job's final test computes one); its AIS "
            f"({module.ais_work:.2g} multiply-adds) is over a request's {AIS_REQUEST_WORK:.0e}: "
            "ask again once the job has finished"
        )
    with torch.no_grad():
        lp = module.log_prob(x, module.store_log_z()[0] if log_z is None else log_z).float()
    if module.exact:
        return LogProb(lp, exact=True)
    return LogProb(lp, exact=False, k=module.params.ais_runs, stderr=float(module.log_z_stderr))


def test_nll_kind(info: DataInfo, params: RBMParams | None) -> LikelihoodKind:
    """Exact when the smaller layer is enumerable, else an AIS estimate (params None, a
    spec the params no longer read: the default width)."""
    hidden = (params or RBMParams()).hidden
    return "exact" if rbm_enumerable(math.prod(info.input_shape), hidden) else "estimate"


FAMILY: Family = Family(
    name="rbm",
    description="Bernoulli-Bernoulli restricted Boltzmann machine trained by CD-k or persistent "
    "CD; free energy, Gibbs sampling, log Z exact by enumeration (≤ 20 units in a layer) or "
    "by AIS with its standard error",
    params=RBMParams,
    datasets=DATASETS,
    capabilities={
        Capability.SAMPLE: sample,
        Capability.LOG_PROB: log_prob,
        Capability.FILTERS: filters,
        # a sweep: h given x, then x given h (two block updates, each a product with W)
        Capability.CHAIN: Chain(chain, default_sweeps, updates=lambda module: 2, rows=2),
    },
    build=build,
    fit=fit,
    default_epochs=50,
    default_batch_size=64,
    likelihood=LikelihoodReport(
        "test_nll",
        "test_bits_per_dim",
        test_nll_kind,
        stderr="test_nll_stderr",
        samples="test_ais_runs",
    ),
)
