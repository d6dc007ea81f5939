"""The family contract every model in the zoo implements.

A *family* is one model kind (``mlp``, ``mc_dropout``, ...). It declares its
hyperparameters (``Params``), the built-in datasets it trains on, what it can
do once trained (``capabilities``), how to build its ``nn.Module`` and how to
train it. The runner (``workers/``) and the API (``app/``) never branch on the
family: they only go through this record.

This module imports nothing from ``app`` or ``workers``: ``models`` is a library.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

if TYPE_CHECKING:
    from models.data import DataInfo
    from models.generative import DecodeFn, EncodeFn, LogProbFn, SampleFn


class Capability(enum.StrEnum):
    SAMPLE = "sample"
    LOG_PROB = "log_prob"
    PREDICT = "predict"
    ACT = "act"
    EMBED = "embed"
    TRAJECTORY = "trajectory"


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
    def should_stop(self) -> bool: ...
    def progress(self, step: int, total: int) -> None: ...


# Inference signatures. Inputs arrive as float tensors already checked for shape
# against DataInfo; outputs are dicts of tensors/lists the API serialises.
PredictFn = Callable[[nn.Module, torch.Tensor, int], dict[str, torch.Tensor]]
# the data is the kind the family trains on (models.data.DataKind): a tensor table for most
FitFn = Callable[[nn.Module, Any, Any, Context], None]
BuildFn = Callable[[Any, "DataInfo"], nn.Module]


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    params: type[Params]
    datasets: frozenset[str]
    capabilities: frozenset[Capability]
    build: BuildFn
    fit: FitFn
    default_epochs: int = 50
    default_batch_size: int = 64
    # capability -> callable; each declared capability must have one
    predict: PredictFn | None = None
    # stochastic passes when a predict request does not say (1 for deterministic models)
    default_mc_samples: int = 1
    # (module, requested T) -> the passes predict really runs, which responses echo: an
    # ensemble its M members, a deterministic model 1; None: T itself (MC dropout)
    mc_passes: Callable[[nn.Module, int], int] | None = None
    # generative families (models/generative.py): sample, log_prob; latent-variable
    # models also encode and decode (VAEs) or decode only (GANs: z -> x)
    sample: SampleFn | None = None
    log_prob: LogProbFn | None = None
    encode: EncodeFn | None = None
    decode: DecodeFn | None = None
    latent_dim: Callable[[Any], int] | None = None  # params -> size of z, for decode
    # importance samples for a bound when a log-prob request does not say
    default_log_prob_k: int = 1
    # params -> the smallest minibatch the model trains on (batch statistics need 2, a
    # PacGAN discriminator a whole pack); None: 1. The API refuses a smaller batch_size.
    min_batch_size: Callable[[Any], int] | None = None

    def __post_init__(self) -> None:
        needs = {
            Capability.PREDICT: self.predict,
            Capability.SAMPLE: self.sample,
            Capability.LOG_PROB: self.log_prob,
        }
        for capability, fn in needs.items():
            if capability in self.capabilities and fn is None:
                raise TypeError(
                    f"family {self.name!r} declares {capability.value} without its function"
                )
        if (self.decode is None) != (self.latent_dim is None):
            raise TypeError(f"family {self.name!r}: decode and latent_dim go together")
