"""``boltzmann``: the fully visible Boltzmann machine (Ackley, Hinton & Sejnowski 1985,
"A Learning Algorithm for Boltzmann Machines"; persistent chains: Tieleman 2008).

An energy-based model over binary vectors x ∈ {0, 1}^D (the notes, §5):

    p(x) = exp(−E(x)) / Z,    E(x) = −½ xᵀWx − bᵀx = −Σ_{i<j} W_ij x_i x_j − bᵀx,

with W symmetric and zero on the diagonal. (The notes write −xᵀWx − bᵀx, which is the
same model with the pair weights counted once: their W is our upper triangle.) W is
parametrised by one square matrix ``U`` of which only the strict upper triangle is read,
W = triu(U, 1) + triu(U, 1)ᵀ, so it is symmetric with a zero diagonal by construction,
whatever the optimizer does.

- ``sampler: exact`` (D ≤ 20 only): Z by enumerating all 2^D states (logsumexp in
  float64, in chunks); training maximises the exact log-likelihood, whose gradient
  −∂E/∂θ|data + E_p[∂E/∂θ] takes the model's exact moments E_p[x xᵀ], E_p[x].
- ``sampler: gibbs``: the surrogate loss mean E(data) − mean E(samples), samples from
  ``gibbs_steps`` Gibbs sweeps of ``chains`` fresh chains started at the minibatch's
  rows (contrastive divergence).
- ``sampler: pcd``: the same loss, the ``chains`` persistent across steps (the
  ``chains_state`` buffer, checkpointed).

Inference: ``samples`` exact draws from the enumerated distribution when D ≤ 20, else
Gibbs chains from uniform noise (``gibbs_steps`` sweeps; same seed, same samples).
``log-prob`` is exact when D ≤ 20; above, log Z is an importance-sampling estimate
(``log_z_samples`` draws from independent Bernoullis at the training pixel means) and
the answer says so (``exact: false`` with its sample count), as the fit's ``test_nll``
does (kind ``estimate``, with ``test_nll_stderr``). The estimate is consistent but can
be far off for a sharp model on many units: read it as such.

Checkpoint ``state["model"]`` keys: ``U`` (D, D; the strict upper triangle is W's),
``b`` (D), ``marginals`` (D; the proposal of the log Z estimate), ``chains_state``
(chains, D; the persistent chains, pcd).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from models.data import DataInfo, Dataset
from models.energy import enumerate_states
from models.family import (
    Capability,
    Chain,
    Context,
    Family,
    LikelihoodKind,
    LikelihoodReport,
    Params,
)
from models.generative import LogProb, OptionError, SampleOptions
from models.loop import final_test, train_epochs

DATASETS = frozenset({"bars_stripes", "digits_bin", "mnist5k_bin"})
MAX_EXACT_UNITS = 20  # 2^20 states: about a second of enumeration


class BoltzmannParams(Params):
    sampler: Literal["exact", "gibbs", "pcd"] = Field(
        "gibbs",
        description="training gradient: exact (enumerate all 2^D states; D ≤ 20), gibbs "
        "(fresh chains from the minibatch) or pcd (persistent chains)",
    )
    chains: int = Field(64, ge=1, le=4096, description="gibbs/pcd: Gibbs chains per step")
    gibbs_steps: int = Field(
        1, ge=1, le=1000, description="Gibbs sweeps per training step, and for samples"
    )
    log_z_samples: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="D > 20: importance samples behind the estimate of log Z in test_nll",
    )


class BoltzmannMachine(nn.Module):
    """E(x), the exact and estimated log Z, Gibbs sweeps and exact draws."""

    marginals: Tensor
    chains_state: Tensor

    def __init__(self, params: BoltzmannParams, info: DataInfo) -> None:
        super().__init__()
        self.params, self.info = params, info
        self.d = d = math.prod(info.input_shape)
        if params.sampler == "exact" and d > MAX_EXACT_UNITS:
            raise ValueError(
                f"params.sampler exact enumerates 2^D states, up to D = {MAX_EXACT_UNITS}; "
                f"{info.name} has D = {d}: use gibbs or pcd"
            )
        self.U = nn.Parameter(torch.zeros(d, d))
        self.b = nn.Parameter(torch.zeros(d))
        self.register_buffer("marginals", torch.full((d,), 0.5))
        rows = params.chains if params.sampler == "pcd" else 0
        self.register_buffer("chains_state", torch.zeros(rows, d))

    @property
    def exact(self) -> bool:
        return self.d <= MAX_EXACT_UNITS

    @property
    def W(self) -> Tensor:
        """The symmetric, zero-diagonal coupling matrix (D, D)."""
        upper = self.U.triu(1)
        return upper + upper.T

    def units(self, x: Tensor) -> Tensor:
        return x.flatten(1) / (self.info.value_max or 1.0)

    def energy(self, u: Tensor) -> Tensor:
        """E(u) (B,) = −Σ_{i<j} W_ij u_i u_j − bᵀu."""
        upper, b = self.U.triu(1).to(u.dtype), self.b.to(u.dtype)
        return -((u @ upper) * u).sum(1) - u @ b

    # --- exact (D ≤ 20) ---

    def states(self) -> Iterator[Tensor]:
        """All 2^D states (float64) in chunks (``models.energy``), bit i of the index as
        unit i."""
        return enumerate_states(self.d, self.b.device)

    def log_z(self) -> Tensor:
        """log Z by enumeration, float64, chunked logsumexp (differentiable)."""
        parts = [torch.logsumexp(-self.energy(u), 0) for u in self.states()]
        return torch.logsumexp(torch.stack(parts), 0)

    @torch.no_grad()
    def moments(self) -> tuple[Tensor, Tensor, Tensor]:
        """(log Z, E_p[u uᵀ], E_p[u]) by enumeration in float64."""
        lz = self.log_z()
        second = torch.zeros(self.d, self.d, dtype=torch.float64, device=self.b.device)
        first = torch.zeros(self.d, dtype=torch.float64, device=self.b.device)
        for u in self.states():
            p = (-self.energy(u) - lz).exp()
            second += (u * p[:, None]).T @ u
            first += p @ u
        return lz, second, first

    def exact_nll(self, u: Tensor) -> Tensor:
        """Mean −log p(u) with its exact gradient: the data term by autograd, the log Z
        term as −E_p[∂E/∂θ] from the enumerated moments (E is linear in U and b)."""
        lz, second, first = self.moments()
        upper = self.U.triu(1)
        # −E_p[E] as a function of the parameters: Σ_{i<j} U_ij E[u_i u_j] + bᵀE[u]
        model = (upper * second.to(upper.dtype)).sum() + self.b @ first.to(self.b.dtype)
        return self.energy(u).mean() + lz.to(u.dtype) + model - model.detach()

    @torch.no_grad()
    def draw_exact(self, n: int, gen: torch.Generator) -> Tensor:
        """n independent draws from the enumerated p (n, D)."""
        lz = self.log_z()
        probs = torch.cat([(-self.energy(u) - lz).exp() for u in self.states()])
        idx = torch.multinomial(probs.cpu(), n, replacement=True, generator=gen)
        return ((idx[:, None] >> torch.arange(self.d)) & 1).to(self.b.device, self.b.dtype)

    # --- Gibbs ---

    @torch.no_grad()
    def gibbs(self, u: Tensor, sweeps: int, gen: torch.Generator) -> Tensor:
        """``sweeps`` systematic-scan sweeps from u (n, D): unit i drawn from
        p(u_i = 1 | rest) = σ(b_i + Σ_j W_ij u_j), in order i = 1..D."""
        u = u.clone()
        W, b = self.W.detach(), self.b.detach()
        for _ in range(sweeps):
            noise = torch.rand(u.shape, generator=gen).to(u.device)
            for i in range(self.d):
                field = u @ W[:, i] + b[i]
                u[:, i] = (noise[:, i] < torch.sigmoid(field)).to(u.dtype)
        return u

    # --- log Z estimate (D > 20) ---

    @torch.no_grad()
    def log_z_estimate(self, k: int, gen: torch.Generator) -> tuple[float, float]:
        """(log Ẑ, its standard error by the delta method): importance sampling with k
        draws from independent Bernoullis at ``marginals``."""
        q = self.marginals.double().clamp(1e-3, 1 - 1e-3)
        u = (torch.rand(k, self.d, generator=gen, dtype=torch.float64) < q.cpu()).double()
        u = u.to(q.device)
        log_q = (u * q.log() + (1 - u) * (1 - q).log()).sum(1)
        w = -self.energy(u) - log_q
        lz = torch.logsumexp(w, 0) - math.log(k)
        r = (w - w.max()).exp()
        se = float(r.std() / (math.sqrt(k) * r.mean())) if k > 1 else math.inf
        return float(lz), se

    def log_prob(self, x: Tensor, k: int) -> tuple[Tensor, float]:
        """(log p(x) (B,), the standard error of log Z: 0 when exact)."""
        u = self.units(x).double()
        if self.exact:
            return -self.energy(u) - self.log_z(), 0.0
        lz, se = self.log_z_estimate(k, torch.Generator().manual_seed(0))
        return -self.energy(u) - lz, se


def build(params: BoltzmannParams, info: DataInfo) -> BoltzmannMachine:
    """The model; sampler exact on more than 20 units raises ``ValueError`` (the API's 422)."""
    return BoltzmannMachine(params, info)


# --- training -------------------------------------------------------------------------------


def fit(module: nn.Module, data: Dataset, params: BoltzmannParams, ctx: Context) -> None:
    assert isinstance(module, BoltzmannMachine)
    dev = ctx.device
    module.to(dev)
    x, y = module.units(data.x_train.to(dev)), data.y_train.to(dev)
    if ctx.resume is None:
        module.marginals.copy_(x.mean(0))
        if params.sampler == "pcd":  # start the persistent chains at training rows
            idx = torch.randint(len(x), (params.chains,), generator=ctx.generator)
            module.chains_state.copy_(x[idx.to(dev)])

    def loss_fn(xb: Tensor, _: Tensor) -> Tensor:
        if params.sampler == "exact":
            return module.exact_nll(xb)
        if params.sampler == "pcd":
            neg = module.gibbs(module.chains_state, params.gibbs_steps, ctx.generator)
            module.chains_state.copy_(neg)
        else:
            idx = torch.randint(len(xb), (params.chains,), generator=ctx.generator)
            neg = module.gibbs(xb[idx.to(xb.device)], params.gibbs_steps, ctx.generator)
        return module.energy(xb).mean() - module.energy(neg).mean()

    opt = ctx.make_optimizer(module.parameters())
    finished = train_epochs(
        module, opt, x, y, ctx, loss_fn=loss_fn,
        evaluate=lambda: evaluate(module, data, "val"),
    )  # fmt: skip
    if finished:
        final_test(module, ctx, lambda: evaluate(module, data, "test"))


def evaluate(module: BoltzmannMachine, data: Dataset, split: str) -> dict[str, float]:
    """NLL on the split (nats per example) and bits per dimension: exact when D ≤ 20,
    else with the estimated log Z (its standard error logged with the test numbers)."""
    x = data.x_val if split == "val" else data.x_test
    k = module.params.log_z_samples
    with torch.no_grad():
        log_p, se = module.log_prob(x.to(module.b.device), k)
    nll = float(-log_p.mean())
    out = {f"{split}_nll": nll, f"{split}_loss": nll}
    out[f"{split}_bits_per_dim"] = nll / (module.d * math.log(2))
    if split == "test":
        out["test_nll_stderr"] = se
        out["log_z_samples"] = 0.0 if module.exact else float(k)
    return out


# --- inference ------------------------------------------------------------------------------


def sample(module: nn.Module, opts: SampleOptions) -> Tensor:
    """Exact draws when D ≤ 20 and the request sets no ``steps``; else the last state of
    ``chain`` after ``opts.steps`` (else ``gibbs_steps``) sweeps. ``temperature`` is not
    supported (1 only): the energy has no noise scale."""
    assert isinstance(module, BoltzmannMachine)
    if module.exact and opts.steps is None:
        _check_options(opts)
        u = module.draw_exact(opts.n, opts.generator())
        return (u.float() * (module.info.value_max or 1.0)).view(opts.n, *module.info.input_shape)
    steps = module.params.gibbs_steps if opts.steps is None else opts.steps
    return chain(module, opts, [steps])[0]


def _check_options(opts: SampleOptions) -> None:
    if opts.label is not None:
        raise OptionError("label", "boltzmann models are unconditional: leave label out")
    if opts.temperature != 1.0:
        raise OptionError("temperature", "boltzmann samples at temperature 1 only")


def chain(module: nn.Module, opts: SampleOptions, at: Sequence[int]) -> Tensor:
    """The states (len(at), n, *input_shape) of n Gibbs chains (systematic scan) after each
    sweep count of ``at`` (ascending; 0: the start, uniform noise), seeded by
    ``opts.seed``. A state does not depend on the counts before it: ``at = [s]`` is
    ``sample`` with ``steps = s``."""
    assert isinstance(module, BoltzmannMachine)
    _check_options(opts)
    rows = opts.n * at[-1]
    if opts.max_rows is not None and rows > opts.max_rows:
        most = max(opts.max_rows // max(at[-1], 1), 0)
        raise OptionError("n", f"{opts.n} chains × {at[-1]} Gibbs sweeps: at most {most}")
    gen = opts.generator()
    u = (torch.rand(opts.n, module.d, generator=gen) < 0.5).float().to(module.b.device)
    frames, done = [], 0
    for target in at:
        u = module.gibbs(u, target - done, gen)
        frames.append(u)
        done = target
    x = torch.stack(frames).float() * (module.info.value_max or 1.0)
    return x.view(len(at), opts.n, *module.info.input_shape)


def filters(module: nn.Module) -> Tensor:
    """Each unit's couplings W[i, :] to the others in the input's shape (D, *input_shape);
    zero at the unit itself."""
    assert isinstance(module, BoltzmannMachine)
    return module.W.detach().reshape(module.d, *module.info.input_shape)


def default_sweeps(module: nn.Module) -> int:
    """The sweeps of a sample when a request sets none: 0 (exact draws) when D ≤ 20,
    else ``gibbs_steps``."""
    assert isinstance(module, BoltzmannMachine)
    return 0 if module.exact else module.params.gibbs_steps


def scan_updates(module: nn.Module) -> int:
    """The sequential updates of one sweep: one per unit."""
    assert isinstance(module, BoltzmannMachine)
    return module.d


def log_prob(module: nn.Module, x: Tensor, labels: Tensor | None, k: int) -> LogProb:
    """Exact log P(x) when D ≤ 20; else with log Z estimated from ``k`` importance
    samples (seed 0), ``exact: false``. Inputs must be 0 or the top level."""
    assert isinstance(module, BoltzmannMachine)
    if labels is not None:
        raise OptionError("labels", "boltzmann models are unconditional: leave labels out")
    top = module.info.value_max or 1.0
    x = x.to(module.b.device).flatten(1)
    if bool(((x != 0) & (x != top)).any()):
        raise OptionError("inputs", f"{module.info.name} is binary: values are 0 or {top:g}")
    with torch.no_grad():
        lp, _ = module.log_prob(x, k)
    if module.exact:
        return LogProb(lp.float(), exact=True)
    return LogProb(lp.float(), exact=False, k=k)


def likelihood_kind(info: DataInfo, params: BoltzmannParams) -> LikelihoodKind:
    return "exact" if math.prod(info.input_shape) <= MAX_EXACT_UNITS else "estimate"


FAMILY: Family = Family(
    name="boltzmann",
    description="fully visible Boltzmann machine: E(x) = -½xᵀWx - bᵀx, exact likelihood "
    "by enumeration up to 20 units, Gibbs or persistent chains beyond",
    params=BoltzmannParams,
    datasets=DATASETS,
    capabilities={
        Capability.SAMPLE: sample,
        Capability.LOG_PROB: log_prob,
        Capability.FILTERS: filters,
        Capability.CHAIN: Chain(chain, default_sweeps, scan_updates),
    },
    build=build,
    fit=fit,
    default_epochs=20,
    default_batch_size=100,
    likelihood=LikelihoodReport(
        "test_nll",
        "test_bits_per_dim",
        likelihood_kind,
        stderr="test_nll_stderr",
        samples="log_z_samples",
    ),
)
