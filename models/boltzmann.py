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

A Gibbs sweep is a systematic scan, unit i = 1..D drawn from σ(b_i + Σ_j W_ij x_j) in
turn; ``gibbs_sweeps`` draws a block of units at once as the fixed point of their
sequential draws (the same draws, about 10× fewer tensor operations).

log Z is exact when D ≤ 20; above, annealed importance sampling (Neal 2001; ``ais_runs``
runs through ``ais_betas`` inverse temperatures, ``models.energy.ais_log_z``) from the
independent model at the training marginals, an estimate with its standard error: the
final test's ``test_nll`` (kind ``estimate``, ``test_nll_stderr``) and ``log-prob``
(``exact: false``). Validation above 20 units reports the negative log pseudo-likelihood
(``val_pseudo_nll``), labelled as such. Inference: ``samples`` exact draws from the
enumerated distribution when D ≤ 20, else Gibbs chains from uniform noise
(``gibbs_steps`` sweeps; same seed, same samples).

Checkpoint ``state["model"]`` keys: ``U`` (D, D; the strict upper triangle is W's),
``b`` (D), ``base_bias`` (D; the train split's marginal logits: AIS's base model),
``chains_state`` (chains, D; the persistent chains, pcd), ``log_z``, ``log_z_stderr``
(0-d float64: the log Z the final test or the first ``log-prob`` computed for these
weights, 0 before; its standard error, 0 when exact, −1 before). The final test writes
the served checkpoint again with its log Z (``final_test(keep=True)``), as ``rbm`` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from models.data import DataInfo, Dataset
from models.energy import KeptLogZ, ais_log_z, enumerate_states
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
BLOCK = 32  # units a Gibbs sweep draws at once (``gibbs_sweeps``)
AIS_MAX_WORK = 10**11  # multiply-adds of one AIS estimate: the inference routes' bound
AIS_SEED = 0  # the AIS runs of a final test and of log-prob draw from this seed


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
    ais_runs: int = Field(
        100, ge=2, le=100_000, description="AIS runs when log Z cannot be enumerated (D > 20)"
    )
    # 100 × 400 fits the work bound on 784 units (at most about 49,000 runs × temperatures)
    ais_betas: int = Field(
        400, ge=2, le=1_000_000, description="AIS inverse temperatures (linear from 0 to 1)"
    )


def ais_work(d: int, runs: int, betas: int) -> int:
    """Multiply-adds of an AIS estimate on d units, at most: per run and inverse
    temperature a sweep (the blocks' fields, D², and at most BLOCK fixed-point steps of
    a (BLOCK, BLOCK) product per block, D × BLOCK²) and the energy (D²)."""
    return runs * betas * d * (2 * d + BLOCK * BLOCK)


class BoltzmannMachine(KeptLogZ):
    """E(x), log Z (exact or AIS), Gibbs sweeps, exact draws, the pseudo-likelihood."""

    base_bias: Tensor
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
        # AIS runs on a log-prob request (or the final test): its work is bounded as any
        # request's
        work = ais_work(d, params.ais_runs, params.ais_betas)
        if d > MAX_EXACT_UNITS and work > AIS_MAX_WORK:
            raise ValueError(
                f"params.ais_runs x ais_betas x {d} units x (2 x {d} + {BLOCK}²) = {work:.2g} "
                f"multiply-adds of AIS, over {AIS_MAX_WORK:.0e}: fewer ais_runs or ais_betas"
            )
        self.U = nn.Parameter(torch.zeros(d, d))
        self.b = nn.Parameter(torch.zeros(d))
        self.register_buffer("base_bias", torch.zeros(d))
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

    def pseudo_nll(self, u: Tensor) -> Tensor:
        """−Σ_i log p(u_i | u_−i) (B,): p(u_i = 1 | rest) = σ(b_i + Σ_j W_ij u_j)."""
        field = u @ self.W.to(u.dtype) + self.b.to(u.dtype)
        return F.softplus((1 - 2 * u) * field).sum(1)

    # --- exact (D ≤ 20) ---

    def states(self) -> Iterator[Tensor]:
        """All 2^D states (float64) in chunks (``models.energy``), bit i of the index as
        unit i."""
        return enumerate_states(self.d, self.b.device)

    def log_z_exact(self) -> Tensor:
        """log Z by enumeration, float64, chunked logsumexp (differentiable)."""
        parts = [torch.logsumexp(-self.energy(u), 0) for u in self.states()]
        return torch.logsumexp(torch.stack(parts), 0)

    @torch.no_grad()
    def moments(self) -> tuple[Tensor, Tensor, Tensor]:
        """(log Z, E_p[u uᵀ], E_p[u]) by enumeration in float64."""
        lz = self.log_z_exact()
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
        lz = self.log_z_exact()
        probs = torch.cat([(-self.energy(u) - lz).exp() for u in self.states()])
        idx = torch.multinomial(probs.cpu(), n, replacement=True, generator=gen)
        return ((idx[:, None] >> torch.arange(self.d)) & 1).to(self.b.device, self.b.dtype)

    # --- Gibbs, log Z ---

    def gibbs(self, u: Tensor, sweeps: int, gen: torch.Generator) -> Tensor:
        """``sweeps`` systematic-scan Gibbs sweeps of the model from u (n, D)."""
        W, b = self.W.detach().to(u.dtype), self.b.detach().to(u.dtype)
        return gibbs_sweeps(u, W, b, sweeps, gen)

    def compute_log_z(self) -> tuple[float, float]:
        """(log Z, standard error): exact by enumeration (error 0), else AIS (seed 0)."""
        with torch.no_grad():
            if self.exact:
                return float(self.log_z_exact()), 0.0
            gen = torch.Generator(device=self.b.device).manual_seed(AIS_SEED)
            p = self.params
            return log_z_ais(self.W, self.b, self.base_bias, p.ais_runs, p.ais_betas, gen)

    def log_prob(self, x: Tensor, log_z: float) -> Tensor:
        """log p(x) (B,) in float64 given log Z."""
        return -self.energy(self.units(x).double()) - log_z


@torch.no_grad()
def gibbs_sweeps(u: Tensor, W: Tensor, b: Tensor, sweeps: int, gen: torch.Generator) -> Tensor:
    """``sweeps`` systematic-scan Gibbs sweeps from u (n, D) under couplings W (D, D;
    symmetric, zero diagonal) and biases b: unit i = 1..D in turn set to [ν_i < σ(f_i)],
    f_i = b_i + Σ_j W_ij u_j, with ν ~ U[0, 1) (n, D) drawn from ``gen`` each sweep.

    Units go ``BLOCK`` at a time. A block's sequential draws c solve the triangular system
    c_m = [logit ν_m < h_m + Σ_{l<m} W_ml c_l], h_m = b_m + Σ_j W_mj u_j over every unit j
    but the block's earlier ones, at its current value (drawn this sweep before the block,
    the last sweep's after it). Its one solution is what Jacobi iteration from the old
    values reaches within block-size steps (step t fixes unit t), stopping at the first
    step that changes nothing (a fixed point solves the system). So these are the
    unit-by-unit scan's draws from the same ν, each block's field one matrix product, in
    about four tensor operations per step, not per unit (docs/models.md#boltzmann)."""
    u = u.clone()
    d = u.shape[1]
    blocks = [(s, min(s + BLOCK, d)) for s in range(0, d, BLOCK)]
    # (c @ w)_m = Σ_{l<m} W_lm c_l: the pull of the block's earlier units on unit m
    within = [W[s:e, s:e].triu(1) for s, e in blocks]
    for _ in range(sweeps):
        nu = torch.rand(u.shape, generator=gen, device=gen.device, dtype=u.dtype)
        threshold = torch.logit(nu.to(u.device))  # ν < σ(f) ⇔ logit ν < f
        for (s, e), w in zip(blocks, within, strict=True):
            old, t = u[:, s:e], threshold[:, s:e]
            h = torch.addmm(b[s:e], u, W[:, s:e]) - old @ w  # (n, block)
            c = old
            for _ in range(e - s):
                step = (t < torch.addmm(h, c, w)).to(u.dtype)
                if torch.equal(step, c):
                    break
                c = step
            u[:, s:e] = c
    return u


def log_z_ais(
    W: Tensor, b: Tensor, base_bias: Tensor, runs: int, betas: int, gen: torch.Generator
) -> tuple[float, float]:
    """(log Z, its standard error) by AIS in float64 along p*_β(x) = exp(−(1−β) E_A(x) −
    β E(x)) from the independent model E_A(x) = −aᵀx (a = ``base_bias``; log Z_A =
    Σ_i softplus(a_i), drawn exactly) to the machine, one Gibbs sweep at each β: its
    fields (1−β) a + β (b + W x)."""
    W, b, a = (t.detach().double() for t in (W, b, base_bias))
    nu = torch.rand(runs, len(a), generator=gen, device=gen.device, dtype=torch.float64)
    x = (nu.to(a.device) < torch.sigmoid(a)).double()

    def log_ratio(x: Tensor) -> Tensor:  # E_A(x) − E(x)
        return 0.5 * ((x @ W) * x).sum(1) + x @ (b - a)

    def sweep(x: Tensor, beta: float) -> Tensor:
        return gibbs_sweeps(x, beta * W, (1 - beta) * a + beta * b, 1, gen)

    return ais_log_z(x, float(F.softplus(a).sum()), log_ratio, sweep, betas)


def build(params: BoltzmannParams, info: DataInfo) -> BoltzmannMachine:
    """The model; ``sampler: exact`` on more than 20 units, or AIS over ``AIS_MAX_WORK``,
    raises ``ValueError`` (the API's 422)."""
    return BoltzmannMachine(params, info)


# --- training -------------------------------------------------------------------------------


def fit(module: nn.Module, data: Dataset, params: BoltzmannParams, ctx: Context) -> None:
    assert isinstance(module, BoltzmannMachine)
    dev = ctx.device
    module.to(dev)
    x, y = module.units(data.x_train.to(dev)), data.y_train.to(dev)
    if ctx.resume is None:
        mean = x.mean(0).clamp(1e-3, 1 - 1e-3)
        module.base_bias.copy_(torch.log(mean) - torch.log1p(-mean))
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

    def validate() -> dict[str, float]:
        with torch.no_grad():
            log_z = float(module.log_z_exact()) if module.exact else None
        return evaluate(module, data, "val", log_z)

    opt = ctx.make_optimizer(module.parameters())
    finished = train_epochs(module, opt, x, y, ctx, loss_fn=loss_fn, evaluate=validate)
    if finished:
        # the served checkpoint keeps the test's log Z: log-prob never recomputes it
        final_test(module, ctx, lambda: test_metrics(module, data), keep=True)


def evaluate(
    module: BoltzmannMachine, data: Dataset, split: str, log_z: float | None
) -> dict[str, float]:
    """The negative log pseudo-likelihood on the split (labelled as such); the NLL (nats
    per example) and bits per dimension when ``log_z`` is given. ``*_loss``: the NLL when
    given, else the pseudo-NLL."""
    x = (data.x_val if split == "val" else data.x_test).to(module.b.device)
    with torch.no_grad():
        pseudo = float(module.pseudo_nll(module.units(x).double()).mean())
        out = {f"{split}_pseudo_nll": pseudo, f"{split}_loss": pseudo}
        if log_z is not None:
            nll = float(-module.log_prob(x, log_z).mean())
            out |= {f"{split}_nll": nll, f"{split}_loss": nll}
            out[f"{split}_bits_per_dim"] = nll / (module.d * math.log(2))
    return out


def test_metrics(module: BoltzmannMachine, data: Dataset) -> dict[str, float]:
    """The test split's metrics with log Z computed (exact or AIS) and kept in the module."""
    log_z, stderr = module.store_log_z()
    out = evaluate(module, data, "test", log_z)
    out |= {
        "test_log_z": log_z,
        "test_nll_stderr": stderr,  # log Z's error is every test example's
        "test_ais_runs": 0.0 if module.exact else float(module.params.ais_runs),
    }
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
    """The sequential updates of one sweep: one per block of ``BLOCK`` units, whose draws
    ``gibbs_sweeps`` solves together (about 1-2 ms a sweep of 784 units, one chain)."""
    assert isinstance(module, BoltzmannMachine)
    return -(-module.d // BLOCK)


def log_prob(module: nn.Module, x: Tensor, labels: Tensor | None, k: int) -> LogProb:
    """Exact log P(x) when D ≤ 20; else with an AIS log Z (``exact: false``, ``k`` its
    runs, seed 0): the one the final test computed, which the served checkpoint keeps; a
    checkpoint without one computes it at the first request and keeps it in the module's
    buffers, so later requests do not enumerate or anneal again. ``k`` is unused. Inputs
    must be 0 or the top level."""
    assert isinstance(module, BoltzmannMachine)
    if labels is not None:
        raise OptionError("labels", "boltzmann models are unconditional: leave labels out")
    top = module.info.value_max or 1.0
    x = x.to(module.b.device).flatten(1)
    if bool(((x != 0) & (x != top)).any()):
        raise OptionError("inputs", f"{module.info.name} is binary: values are 0 or {top:g}")
    with torch.no_grad():
        log_z = module.kept_log_z()
        lp = module.log_prob(x, module.store_log_z()[0] if log_z is None else log_z)
    if module.exact:
        return LogProb(lp.float(), exact=True)
    stderr = float(module.log_z_stderr)
    return LogProb(lp.float(), exact=False, k=module.params.ais_runs, stderr=stderr)


def likelihood_kind(info: DataInfo, params: BoltzmannParams) -> LikelihoodKind:
    return "exact" if math.prod(info.input_shape) <= MAX_EXACT_UNITS else "estimate"


FAMILY: Family = Family(
    name="boltzmann",
    description="fully visible Boltzmann machine: E(x) = -½xᵀWx - bᵀx, exact likelihood "
    "by enumeration up to 20 units, Gibbs or persistent chains and an AIS log Z beyond",
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
        samples="test_ais_runs",
    ),
)
