"""The family contract every model in the zoo implements.

A *family* is one model kind (``mlp``, ``mc_dropout``, ...). It declares its
hyperparameters (``Params``), the built-in datasets it trains on, what it can
do once trained (``capabilities``: each capability mapped to its function), how
to build its ``nn.Module`` and how to train it. The runner (``workers/``) and the
API (``app/``) never branch on the family: they only go through this record.

This module imports nothing from ``app`` or ``workers``: ``models`` is a library.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

if TYPE_CHECKING:
    from models.data import DataInfo
    from models.generative import (
        ChainFn,
        CompleteFn,
        DecodeFn,
        EncodeFn,
        FiltersFn,
        InterpolateFn,
        LogProbFn,
        ReceptiveFieldFn,
        SampleFn,
        SampleOptions,
    )
    from models.rl import ActFn, RolloutFn


class Capability(enum.StrEnum):
    """What a trained model answers; ``Family.capabilities`` maps each one it declares to
    its function (signatures: ``CapabilityFn`` below)."""

    PREDICT = "predict"
    SAMPLE = "sample"
    LOG_PROB = "log_prob"
    ENCODE = "encode"
    DECODE = "decode"
    INTERPOLATE = "interpolate"
    RECEPTIVE_FIELD = "receptive_field"
    COMPLETE = "complete"
    FILTERS = "filters"
    CHAIN = "chain"
    ACT = "act"
    ROLLOUT = "rollout"
    EMBED = "embed"
    NEIGHBORS = "neighbors"
    TRAJECTORY = "trajectory"
    GRADIENTS = "gradients"


class Diverged(FloatingPointError):
    """A non-finite training loss; the runner fails the job with this message."""

    def __init__(self, step: int) -> None:
        super().__init__(f"diverged at step {step}")
        self.step = step

    def __reduce__(self) -> tuple[type[Diverged], tuple[int]]:
        return (Diverged, (self.step,))  # pickles by step, not by message


class Params(BaseModel):
    """Base of every family's hyperparameters: unknown keys are refused, and so are
    numbers given as strings or booleans (``"64"``, ``true``; strict mode; an int is
    still a float)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Context(Protocol):
    """What a family's ``fit`` may use; the runner owns everything around the loop.

    ``workers.runner.TrainContext`` is the service's implementation (database
    metrics, safetensors checkpoints, heartbeats); ``models.context.LocalContext``
    is an in-memory one for notebooks, tests and benchmarks.
    """

    device: torch.device
    seed: int
    epochs: int | None  # exactly one of epochs / steps is set
    steps: int | None
    batch_size: int
    resume: dict[str, Any] | None  # the state passed to the last checkpoint(), or None
    generator: torch.Generator  # seeded; use it for shuffling and noise

    def make_optimizer(
        self, params: Any, *, weight_decay: float | None = None
    ) -> torch.optim.Optimizer: ...
    def log(self, step: int, **metrics: float) -> None: ...
    def checkpoint(self, step: int, state: dict[str, Any], *, best: bool = False) -> None: ...
    def best_model(self) -> dict[str, torch.Tensor] | None:
        """The ``"model"`` state of the last checkpoint offered with ``best=True``, in this
        run or (after a resume) an earlier one: the weights inference serves. None when no
        checkpoint was ever best, and inference serves the latest."""
        ...

    def update_served(self, model: dict[str, torch.Tensor]) -> None:
        """Replace the ``"model"`` state of the checkpoint inference serves (the best, else
        the latest) with ``model``, keeping the rest of it: for what the final test computed
        on the served weights and inference would otherwise recompute (an RBM's log Z). A
        resume from it trains exactly as from the one it replaces."""
        ...

    def should_stop(self) -> bool: ...
    def progress(self, step: int, total: int) -> None: ...


# Inference signatures, one per capability. Inputs arrive as float tensors already checked
# for shape against DataInfo; outputs are tensors (or dicts of them) the API serialises.
# The generative ones (SampleFn, LogProbFn, EncodeFn, DecodeFn, InterpolateFn) are
# documented in models/generative.py.
PredictFn = Callable[[nn.Module, torch.Tensor, int], dict[str, torch.Tensor]]  # x, T passes
# a recurrent model's gradient profile over time on a batch (x, y): ‖∂L/∂c_k‖ and ‖∂c_T/∂c_k‖
# per recorded step k, each (K,), at the steps ``positions`` (K,) (1-based), K ≤ 32. Its fit
# logs them at each evaluation as the metrics GRADIENT_METRICS[i] + str(k): the history
# ``GET /v1/jobs/{id}/gradients.png`` draws
GradientsFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
GRADIENT_METRICS = ("grad_t", "jacobian_t")
# a landscape's loss at points: (n, dim) whole points, or (n, 2) points of the plotted
# plane (the first two coordinates) -> {"loss": (n,)}: the contour a trajectory is drawn
# on (``models.optim_lab``; the path itself is the fit's logged metrics, the start the
# module's parameters as built)
TrajectoryFn = Callable[[nn.Module, torch.Tensor], dict[str, torch.Tensor]]
# node indices (m,) int64 -> {"vectors": (m, dim)}
EmbedFn = Callable[[nn.Module, torch.Tensor], dict[str, torch.Tensor]]
# node indices (m,), k -> {"nodes": (m, k) int64, "similarity": (m, k)}, most similar first
NeighborsFn = Callable[[nn.Module, torch.Tensor, int], dict[str, torch.Tensor]]
# the data is the kind the family trains on (models.data.DataKind): a tensor table for most
FitFn = Callable[[nn.Module, Any, Any, Context], None]
BuildFn = Callable[[Any, "DataInfo"], nn.Module]


@dataclass(frozen=True)
class Decoder:
    """DECODE's declaration: ``decode`` (module, z (n, latent_dim), labels | None) ->
    (n, *input_shape), and ``latent_dim`` (the family's params -> the size of z), which
    the API needs to read latents before it decodes them. ``rows`` (module -> the forward
    rows through every parameter that decoding one z costs, for the API's bound on work;
    None: 1): an autoregressive decoder (``pixelvae``) runs a pass per pixel."""

    decode: DecodeFn
    latent_dim: Callable[[Any], int]
    rows: Callable[[nn.Module], int] | None = None

    def __call__(
        self, module: nn.Module, z: torch.Tensor, labels: torch.Tensor | None
    ) -> torch.Tensor:
        return self.decode(module, z, labels)


@dataclass(frozen=True)
class Chain:
    """CHAIN's declaration, that the model samples by Markov chains (its SAMPLE honours
    ``SampleOptions.steps``): ``run`` (module, SampleOptions, at) -> the chains' states
    after each sweep count of ``at`` (``models.generative.ChainFn``). The API bounds a
    request's work before a chain runs with the rest: ``sweeps`` (module -> the sweeps
    SAMPLE runs when a request sets none; 0 when it then draws exactly, without a
    chain), ``updates`` (module -> the sequential updates of one sweep: an RBM's two
    block updates, a Boltzmann machine's one per unit; each costs the same few small ops
    whatever the chains) and ``rows`` (the forward rows through every parameter that one
    sweep of one chain costs: an RBM's 2, x -> h and h -> x; a Boltzmann machine's 1)."""

    run: ChainFn
    sweeps: Callable[[nn.Module], int]
    updates: Callable[[nn.Module], int]
    rows: int = 1

    def __call__(self, module: nn.Module, opts: SampleOptions, at: Sequence[int]) -> torch.Tensor:
        return self.run(module, opts, at)


# capability -> the positional arguments its function takes (the signatures above)
ARITY: dict[Capability, int] = {
    Capability.PREDICT: 3,  # module, x, T
    Capability.SAMPLE: 2,  # module, SampleOptions
    Capability.LOG_PROB: 4,  # module, x, labels, k
    Capability.ENCODE: 3,  # module, x, labels
    Capability.DECODE: 3,  # module, z, labels (a Decoder)
    Capability.INTERPOLATE: 3,  # z_a, z_b, steps
    Capability.RECEPTIVE_FIELD: 2,  # module, position
    Capability.COMPLETE: 4,  # module, x, observed, SampleOptions
    Capability.FILTERS: 1,  # module
    Capability.CHAIN: 3,  # module, SampleOptions, at (a Chain)
    Capability.ACT: 2,  # module, observations (models.rl.ActFn)
    Capability.ROLLOUT: 3,  # module, environment, RolloutOptions (models.rl.RolloutFn)
    Capability.GRADIENTS: 3,  # module, x, y (GradientsFn)
    Capability.EMBED: 2,  # module, node indices (EmbedFn)
    Capability.NEIGHBORS: 3,  # module, node indices, k (NeighborsFn)
    Capability.TRAJECTORY: 2,  # module, points of the plane (TrajectoryFn)
}


# what a reported test log-likelihood is: exact log P; a bound on it (variational,
# importance-weighted or dequantisation: the NLL is an upper bound); a stochastic estimate
# (annealed importance sampling) with a standard error
LikelihoodKind = Literal["exact", "bound", "estimate"]
LIKELIHOOD_KINDS: tuple[LikelihoodKind, ...] = ("exact", "bound", "estimate")


@dataclass(frozen=True)
class LikelihoodReport:
    """A likelihood family's test log-likelihood: the metrics its ``fit`` logs for the final
    weights on the dataset's fixed test split, and what kind of number they are. The
    leaderboard (``GET /v1/leaderboard``) ranks jobs by them; a family without a report
    is not a likelihood family.

    ``nll`` names −log p(x) per test example in nats; ``bits_per_dim`` the same in bits per
    dimension (reported on discrete data only: bits of a density are no code length);
    ``kind`` is a ``LikelihoodKind``, or (DataInfo, params) -> one where it depends on the
    data; ``stderr`` names an estimate's standard error (nats), ``samples`` the importance
    samples (or chains) behind a bound or an estimate.
    """

    nll: str
    bits_per_dim: str | None = None
    kind: LikelihoodKind | Callable[[DataInfo, Any], LikelihoodKind] = "exact"
    stderr: str | None = None
    samples: str | None = None

    def __post_init__(self) -> None:
        if not callable(self.kind) and self.kind not in LIKELIHOOD_KINDS:
            raise TypeError(f"likelihood kind {self.kind!r} is not one of {LIKELIHOOD_KINDS}")

    def kind_for(self, info: DataInfo, params: Any) -> LikelihoodKind:
        kind = self.kind(info, params) if callable(self.kind) else self.kind
        if kind not in LIKELIHOOD_KINDS:
            raise ValueError(f"likelihood kind {kind!r} is not one of {LIKELIHOOD_KINDS}")
        return kind

    def bits_metric(self, info: DataInfo) -> str | None:
        """``bits_per_dim`` on discrete data (``DataInfo.levels``), None on continuous data."""
        return self.bits_per_dim if info.levels is not None else None

    def metric_names(self, info: DataInfo) -> tuple[str, ...]:
        """The metrics a finished fit on data ``info`` logs for this report."""
        names = (self.nll, self.bits_metric(info), self.stderr, self.samples)
        return tuple(n for n in names if n is not None)


# the usual declaration: an exact test NLL logged as ``test_nll`` and ``test_bits_per_dim``
EXACT_TEST_NLL = LikelihoodReport("test_nll", "test_bits_per_dim", "exact")


class Unsupported(LookupError):
    """A capability (or a view built on one) the model does not have; the API answers 409
    naming what it can do (``can``: the catalog's ``capabilities``)."""

    def __init__(self, family: Family, what: str, why: str = "") -> None:
        self.family, self.what, self.can = family.name, what, family.can
        super().__init__(f"model {family.name!r} cannot {what}{why}; it can: {', '.join(self.can)}")


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    params: type[Params]
    datasets: frozenset[str]
    # capability -> its function, one entry per capability (``capability()`` reads it typed)
    capabilities: Mapping[Capability, Callable[..., Any]] = field(hash=False)
    build: BuildFn
    fit: FitFn
    default_epochs: int = 50
    # a family that counts environment steps (RL): train.steps defaults to this, and a
    # spec giving train.epochs is refused (422 naming it); None: epochs, the default
    default_steps: int | None = None
    default_batch_size: int = 64
    # stochastic passes when a predict request does not say (1 for deterministic models)
    default_mc_samples: int = 1
    # (module, requested T) -> the passes predict really runs, which responses echo: an
    # ensemble its M members, a deterministic model 1; None: T itself (MC dropout)
    mc_passes: Callable[[nn.Module, int], int] | None = None
    # importance samples for a bound when a log-prob request does not say
    default_log_prob_k: int = 1
    # module -> the work of LOG_PROB per input (and per importance sample) in full-model
    # forward rows, for the API's bound on work: a MADE averaging over M masks M, a pixel
    # model its pass over the image's pixels (models.pixel.PixelDensity.pass_rows); None: 1
    log_prob_passes: Callable[[nn.Module], int] | None = None
    # module -> the work of PREDICT per input in full-model forward rows, for the same
    # bound: a recurrent model runs its whole network once a time step (T); None: 1
    predict_rows: Callable[[nn.Module], int] | None = None
    # params -> the smallest minibatch the model trains on (batch statistics need 2, a
    # PacGAN discriminator a whole pack); None: 1. The API refuses a smaller batch_size.
    min_batch_size: Callable[[Any], int] | None = None
    # (params, data) -> the largest minibatch whose training step the service admits (a
    # recurrent model's step grows with the sequence's length); None: TrainSpec's bound.
    # The API refuses a larger batch_size.
    max_batch_size: Callable[[Any, DataInfo], int] | None = None
    # the labels of the built-in patterns it also trains on (``models.data.builtin.PATTERNS``:
    # ``adding_<T>``, whose members the job spec's ``dataset`` accepts by name)
    dataset_patterns: frozenset[str] = frozenset()
    # the test log-likelihood its fit logs (the leaderboard ranks by it); None: not a
    # likelihood family
    likelihood: LikelihoodReport | None = None
    # its loop passes ``opt.step`` a closure that evaluates the loss again
    # (``models.loop.train_epochs`` does), so the ``newton`` optimizer can train it; the API
    # refuses newton for a family without one (422 on optimizer.name)
    second_order: bool = False

    def __post_init__(self) -> None:
        for capability, fn in self.capabilities.items():
            _check(self.name, capability, fn)
        declared = self.capabilities
        if Capability.INTERPOLATE in declared and Capability.DECODE not in declared:
            raise TypeError(f"family {self.name!r} declares interpolate without decode")
        if Capability.CHAIN in declared and Capability.SAMPLE not in declared:
            raise TypeError(f"family {self.name!r} declares chain without sample")
        object.__setattr__(self, "capabilities", MappingProxyType(dict(self.capabilities)))

    @property
    def can(self) -> list[str]:
        """The capabilities' names, sorted: what the catalog and a 409 list."""
        return sorted(c.value for c in self.capabilities)

    @overload
    def capability(self, c: Literal[Capability.PREDICT]) -> PredictFn: ...
    @overload
    def capability(self, c: Literal[Capability.SAMPLE]) -> SampleFn: ...
    @overload
    def capability(self, c: Literal[Capability.LOG_PROB]) -> LogProbFn: ...
    @overload
    def capability(self, c: Literal[Capability.ENCODE]) -> EncodeFn: ...
    @overload
    def capability(self, c: Literal[Capability.DECODE]) -> Decoder: ...
    @overload
    def capability(self, c: Literal[Capability.INTERPOLATE]) -> InterpolateFn: ...
    @overload
    def capability(self, c: Literal[Capability.RECEPTIVE_FIELD]) -> ReceptiveFieldFn: ...
    @overload
    def capability(self, c: Literal[Capability.COMPLETE]) -> CompleteFn: ...
    @overload
    def capability(self, c: Literal[Capability.FILTERS]) -> FiltersFn: ...
    @overload
    def capability(self, c: Literal[Capability.CHAIN]) -> Chain: ...
    @overload
    def capability(self, c: Literal[Capability.ACT]) -> ActFn: ...
    @overload
    def capability(self, c: Literal[Capability.ROLLOUT]) -> RolloutFn: ...
    @overload
    def capability(self, c: Literal[Capability.GRADIENTS]) -> GradientsFn: ...
    @overload
    def capability(self, c: Literal[Capability.EMBED]) -> EmbedFn: ...
    @overload
    def capability(self, c: Literal[Capability.NEIGHBORS]) -> NeighborsFn: ...
    @overload
    def capability(self, c: Literal[Capability.TRAJECTORY]) -> TrajectoryFn: ...
    @overload
    def capability(self, c: Capability) -> Callable[..., Any]: ...
    def capability(self, c: Capability) -> Callable[..., Any]:
        """The function declared for ``c``; ``Unsupported`` (the API's 409) without one."""
        fn = self.capabilities.get(c)
        if fn is None:
            raise Unsupported(self, c.value)
        return fn


def _check(family: str, capability: Any, fn: Any) -> None:
    """TypeError unless ``fn`` can serve ``capability`` (called at import, by ``Family``)."""
    if not isinstance(capability, Capability):
        raise TypeError(f"family {family!r}: {capability!r} is not a Capability")
    if fn is None or not callable(fn):
        raise TypeError(f"family {family!r} declares {capability.value} without its function")
    if capability is Capability.DECODE and not isinstance(fn, Decoder):
        raise TypeError(f"family {family!r}: decode is declared as a Decoder(decode, latent_dim)")
    if capability is Capability.CHAIN and not isinstance(fn, Chain):
        raise TypeError(f"family {family!r}: chain is declared as a Chain(run, sweeps, updates)")
    arity = ARITY.get(capability)
    if arity is None:
        return
    target = fn.decode if isinstance(fn, Decoder) else fn.run if isinstance(fn, Chain) else fn
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without one: nothing to check
        return
    try:
        signature.bind(*range(arity))
    except TypeError:
        raise TypeError(
            f"family {family!r}: its {capability.value} function {signature} does not take "
            f"the {arity} positional arguments of a {capability.value} function"
        ) from None
