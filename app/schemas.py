"""Request and response bodies. ``JobSpec`` is a union discriminated by ``model``,
built from the registry so the OpenAPI document shows every model's own spec."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapSerializer,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from models.data.builtin import PATTERNS
from models.data.upload import UPLOAD_ID
from models.family import Family, LikelihoodKind
from models.optim import OptimizerSpec
from models.registry import REGISTRY, trains_on_uploads

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL = ("succeeded", "failed", "cancelled")
Device = Literal["auto", "cpu", "cuda"]


class TrainSpec(BaseModel):
    """How long and where to train; ``epochs`` or ``steps`` (RL counts environment steps)."""

    # "epochs or steps, not both", stated in the JSON Schema too (clients and fuzzers read it)
    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # "10" or true is no number of epochs; an int is still a float
        json_schema_extra={
            "not": {
                "required": ["epochs", "steps"],
                "properties": {"epochs": {"type": "integer"}, "steps": {"type": "integer"}},
            }
        },
    )

    epochs: Annotated[int | None, Field(ge=1, le=100_000, description="passes over the data")] = (
        None
    )
    steps: Annotated[
        int | None, Field(ge=1, le=10_000_000, description="optimizer or environment steps")
    ] = None
    batch_size: Annotated[
        int | None, Field(ge=1, le=65_536, description="minibatch size (family default)")
    ] = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1, description="seeds every RNG")] = 0
    device: Device = Field("auto", description="auto: CUDA when the worker has it, else CPU")
    checkpoint_every: Annotated[
        int, Field(ge=1, le=100_000, description="checkpoint every N epochs (or N·100 steps)")
    ] = 1
    keep_checkpoints: Annotated[
        int,
        Field(
            ge=1,
            le=100,
            description="checkpoints kept: the latest N, plus the best (the one inference "
            "uses); older ones are deleted as new ones are written",
        ),
    ] = 2
    max_minutes: Annotated[
        float, Field(gt=0, le=24 * 60, description="wall-clock limit; the job fails past it")
    ] = 60.0

    @model_validator(mode="after")
    def _one_budget(self) -> TrainSpec:
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give epochs or steps, not both")
        return self


def _dataset_field(family: Family) -> Any:
    """A built-in name; for families that train on uploads also an upload id (``ds_…``;
    whose it is is checked when the job is created); for families with built-in patterns
    (``Family.dataset_patterns``) also a member's name (``adding_37``)."""
    datasets = tuple(sorted(family.datasets))
    uploads = trains_on_uploads(family)
    if not uploads and not family.dataset_patterns:
        return (Literal[datasets], Field(description="built-in dataset"))
    upload = re.compile(UPLOAD_ID)
    patterns = {label: PATTERNS[label] for label in sorted(family.dataset_patterns)}
    expected = ", ".join([*map(repr, datasets), *patterns])
    also = "" if not uploads else ", or an upload id (ds_ and 16 hex digits)"

    def check(value: str) -> str:
        if value in family.datasets or (uploads and upload.match(value)):
            return value
        for pattern in patterns.values():
            try:
                if pattern.member(value) is not None:
                    return value
            except ValueError as exc:
                raise PydanticCustomError("value_error", str(exc)) from None
        raise PydanticCustomError(
            "literal_error", "Input should be one of {expected}" + also, {"expected": expected}
        )

    schema: dict[str, Any] = {"anyOf": [{"enum": list(datasets)}]}
    if uploads:
        schema["anyOf"].append({"type": "string", "pattern": UPLOAD_ID})
    for label, pattern in patterns.items():
        schema["anyOf"].append({"type": "string", "pattern": pattern.json_pattern})
        schema.setdefault("description", "")
        schema["description"] += f"{label}: {pattern.description}. "
    what = "built-in dataset" + (", or the id of one of your uploads" if uploads else "")
    if patterns:
        what += ", or a member of " + ", ".join(patterns)
    return (
        Annotated[str, AfterValidator(check), WithJsonSchema(schema)],
        Field(description=what),
    )


def _spec_model(family: Family) -> type[BaseModel]:
    title = "".join(part.capitalize() for part in family.name.split("_")) + "JobSpec"
    return create_model(
        title,
        __config__=ConfigDict(extra="forbid", title=title),
        __doc__=f"A `{family.name}` job: {family.description}",
        model=(Literal[family.name], Field(description="model family")),  # type: ignore[arg-type]
        dataset=_dataset_field(family),
        params=(family.params, Field(default_factory=family.params)),
        optimizer=(OptimizerSpec, Field(default_factory=OptimizerSpec)),
        train=(TrainSpec, Field(default_factory=TrainSpec)),
        name=(Annotated[str | None, Field(max_length=200)], None),
        tags=(
            Annotated[
                dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=256)]],
                Field(max_length=32),
            ],
            Field(default_factory=dict),
        ),
    )


SPEC_MODELS: dict[str, type[BaseModel]] = {name: _spec_model(f) for name, f in REGISTRY.items()}
JobSpec = Annotated[Union[tuple(SPEC_MODELS.values())], Field(discriminator="model")]  # type: ignore[valid-type]  # noqa: UP007


def _as_stored(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A stored spec as the current ``JobSpec`` when it still is one; a spec written by an
    older release (a parameter since renamed) is answered as stored rather than failing."""
    try:
        return handler(value)
    except ValidationError:
        return value


def _dump_stored(value: Any, handler: SerializerFunctionWrapHandler):
    # no return annotation: the documented (serialization) schema stays the union's
    return value if isinstance(value, dict) else handler(value)


# the job's spec as stored (defaults filled in); documented as the JobSpec union
StoredSpec = Annotated[JobSpec, WrapValidator(_as_stored), WrapSerializer(_dump_stored)]  # type: ignore[valid-type]
# the schema of a binary body (PNG, safetensors): generated clients read it as a file
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
# one value per output; null where it is not finite (NaN, inf)
Vector = list[float | None]


class Progress(BaseModel):
    step: int
    total: int
    fraction: float
    eta_seconds: float | None


class JobOut(BaseModel):
    id: str
    name: str | None
    model: str
    dataset: str
    spec: StoredSpec = Field(description="the spec as submitted, every default filled in")
    tags: dict[str, str]
    status: JobStatus
    progress: Progress
    metrics: dict[str, float | None]
    attempts: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    checkpoint: str | None
    provenance: dict[str, Any]


class JobList(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    epochs: Annotated[int | None, Field(ge=1, le=100_000)] = None
    steps: Annotated[int | None, Field(ge=1, le=10_000_000)] = None
    max_minutes: Annotated[float | None, Field(gt=0, le=24 * 60)] = None


class CloneRequest(BaseModel):
    """Overrides merged into the source job's spec (nested objects merge key by key)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = None
    params: dict[str, Any] | None = None
    optimizer: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    name: Annotated[str | None, Field(max_length=200)] = None
    tags: dict[str, str] | None = None


class CheckpointOut(BaseModel):
    id: str
    step: int
    is_best: bool
    sha256: str
    size: int
    created_at: datetime


class ModelOut(BaseModel):
    name: str
    description: str
    capabilities: list[str]
    datasets: list[str]
    # built-in patterns it also trains on: label (adding_<T>) -> what its members are
    dataset_patterns: dict[str, str] = {}
    params_schema: dict[str, Any]
    default_epochs: int
    # set for a family that counts environment steps (RL): its default train.steps, and
    # train.epochs is refused for it
    default_steps: int | None = None


class DatasetOut(BaseModel):
    """A built-in (``kind`` builtin) or an upload (``table`` from CSV, ``arrays`` from NPZ,
    ``edges``, a graph from an edge list: ``shape`` [nodes], ``features`` its columns).

    ``shape``: built-ins ``[n_train, *input_shape]``, uploads ``[n_rows, *input_shape]``.
    ``task`` is the task its data kind declared (``models.data.kinds``): ``regression``,
    ``classification`` or ``multitask`` for tables and image sets (an upload is one of the
    first two), or a new kind's own (``control``, ``embedding``, ...). The upload-only
    fields are null for built-ins."""

    id: str
    name: str
    kind: Literal["builtin", "table", "arrays", "edges"]
    description: str
    task: str | None = Field(
        None, description="regression, classification, multitask, or another data kind's task"
    )
    shape: list[int] | None = None
    n_rows: int | None = None
    n_features: int | None = None
    target: str | None = Field(None, description="the CSV column predicted")
    features: list[str] | None = None
    classes: list[str] | None = Field(
        None, description="classification: the label of each class index (probs columns)"
    )
    splits: dict[str, int] | None = Field(None, description="rows in train, val, test")
    sha256: str | None = Field(None, description="of the uploaded file")
    size_bytes: int | None = None
    created_at: datetime | None = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(description="a list of inputs, each shaped like one example")
    mc_samples: Annotated[int | None, Field(ge=1, description="stochastic passes T")] = None
    seed: Annotated[
        int,
        Field(
            ge=0, le=2**63 - 1, description="seeds the stochastic passes: same seed, same answer"
        ),
    ] = 0


class Interval(BaseModel):
    level: float
    lower: list[list[float | None]]
    upper: list[list[float | None]]


class Prediction(BaseModel):
    """Regression fills mean … interval; classification fills probs … mutual_information."""

    mean: list[list[float | None]] | None = None
    epistemic_var: list[list[float | None]] | None = None
    aleatoric_var: list[list[float | None]] | None = None
    total_var: list[list[float | None]] | None = None
    interval: Interval | None = None
    probs: list[list[float | None]] | None = None
    predictive_entropy: list[float | None] | None = None
    expected_entropy: list[float | None] | None = None
    mutual_information: list[float | None] | None = None


class TaskPrediction(Prediction):
    """One task of a multitask model."""

    kind: Literal["regression", "classification"]


class PredictOut(Prediction):
    """Single-task models fill the fields of ``Prediction``; multitask ones ``tasks``."""

    job_id: str
    checkpoint: str
    task: Literal["regression", "classification", "multitask"]
    mc_samples: int
    seed: int = 0
    tasks: dict[str, TaskPrediction] | None = Field(
        None, description="multitask: task name -> that task's prediction"
    )


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    admin: bool = False
    owner: Annotated[
        str | None,
        Field(min_length=1, max_length=64, description="share an owner with existing keys"),
    ] = None


class KeyOut(BaseModel):
    id: str
    name: str
    owner: str
    prefix: str
    is_admin: bool
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str


AcquireStrategy = Literal["bald", "max_entropy", "variance"]


class AcquireRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool: list[Any] = Field(description="unlabelled candidates, each shaped like one example")
    k: Annotated[int, Field(ge=1, description="how many to pick (at most the pool's size)")] = 5
    strategy: AcquireStrategy | None = Field(
        None,
        description="bald (mutual information) or max_entropy (predictive entropy) for "
        "classification; variance (epistemic, summed over outputs) for regression; "
        "default: bald for classification, variance for regression",
    )
    mc_samples: Annotated[int | None, Field(ge=1, description="stochastic passes T")] = None
    seed: Annotated[
        int,
        Field(
            ge=0, le=2**63 - 1, description="seeds the stochastic passes: same seed, same answer"
        ),
    ] = 0


class AcquireItem(BaseModel):
    index: int
    input: Any
    score: float | None


class AcquireOut(BaseModel):
    job_id: str
    checkpoint: str
    strategy: AcquireStrategy
    mc_samples: int
    seed: int = 0
    items: list[AcquireItem]


class CalibrationBin(BaseModel):
    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


class CoveragePoint(BaseModel):
    level: float
    coverage: float
    width: float


class CalibrationOut(BaseModel):
    """Test-split calibration; classification fills ``bins``, regression ``curve``."""

    job_id: str
    checkpoint: str
    task: Literal["regression", "classification"]
    mc_samples: int
    seed: int = 0
    n_test: int
    metrics: dict[str, float | None]
    bins: list[CalibrationBin] | None = None
    curve: list[CoveragePoint] | None = None


class MetricPoint(BaseModel):
    name: str
    step: int
    value: float | None = Field(description="null where not finite")
    time: datetime


class MetricsOut(BaseModel):
    job_id: str
    metrics: list[MetricPoint] = Field(description="ordered by name, then step")


class SamplesOut(BaseModel):
    job_id: str
    checkpoint: str
    samples: list[Vector] = Field(
        description="one row per sample, in the data's units (images flattened row-major)"
    )
    seed: int
    n: int
    label: int | None
    temperature: float
    gibbs_steps: int | None = Field(
        None, description="the request's sweeps per chain (chain samplers; null: the model's)"
    )


class ReceptiveFieldOut(BaseModel):
    job_id: str
    checkpoint: str
    row: int
    col: int
    field: list[list[float]] = Field(
        description="H × W: the influence of each input pixel on the conditional of pixel "
        "(row, col), Σ |gradient| (channels summed); exactly 0 where it has none"
    )
    influences: int = Field(description="how many pixels influence it (field > 0)")


class ActRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    observations: list[Any] = Field(
        description="a list of observations, each shaped like the environment's observation"
    )


class ActOut(BaseModel):
    """The deterministic (greedy) action per observation, with what the policy saw."""

    job_id: str
    checkpoint: str
    actions: list[Any] = Field(description="an action index (discrete) or vector (continuous)")
    q_values: list[list[float | None]] | None = Field(
        None, description="value methods (dqn): Q(s, a) of every action"
    )
    probs: list[list[float | None]] | None = Field(
        None, description="stochastic policies (reinforce): π(a | s) of every action"
    )


class RolloutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    episodes: Annotated[int, Field(ge=1, le=100, description="evaluation episodes to run")] = 1
    seed: Annotated[
        int, Field(ge=0, le=2**31 - 1, description="seeds the episodes: same seed, same returns")
    ] = 0


class RolloutOut(BaseModel):
    job_id: str
    checkpoint: str
    seed: int
    returns: list[float] = Field(description="each episode's return (raw, unclipped rewards)")
    lengths: list[int] = Field(description="each episode's length in environment steps")


class LogProbRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(description="examples in the data's own shape and units")
    labels: list[int] | None = Field(None, description="one class per input (conditional)")
    k: Annotated[int | None, Field(ge=1, description="importance samples for a bound")] = None


class EncodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Any]
    labels: list[int] | None = None


class DecodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latents: list[Any] = Field(description="latent vectors z, each of the model's latent size")
    labels: list[int] | None = None


class LogProbOut(BaseModel):
    job_id: str
    checkpoint: str
    log_prob: Vector = Field(description="per input, in nats")
    bits_per_dim: Vector
    exact: bool = Field(description="false: a bound or an estimate (kind)")
    kind: Literal["exact", "bound", "estimate"] = Field(
        description="exact log p; a lower bound (importance-weighted or dequantised, k "
        "samples); or a stochastic estimate (an AIS log Z with k runs, stderr its error)"
    )
    k: int | None
    stderr: float | None = Field(
        description="an estimate's standard error in nats (log Z's, the same for every "
        "input); null otherwise"
    )


class EncodeOut(BaseModel):
    """The approximate posterior q(z|x) of each input."""

    job_id: str
    checkpoint: str
    mean: list[Vector]
    log_var: list[Vector]


class DecodeOut(BaseModel):
    job_id: str
    checkpoint: str
    outputs: list[Vector] = Field(description="one row per latent, in the data's units")


LeaderboardMetric = Literal["nll", "bits_per_dim"]


class LeaderboardEntry(BaseModel):
    """One finished job's test log-likelihood on the dataset's fixed test split."""

    rank: int = Field(description="1 is the best (the lowest value of the metric)")
    job_id: str
    name: str | None
    model: str
    params: dict[str, Any] = Field(description="the job's params that differ from the defaults")
    nll: float | None = Field(description="test negative log-likelihood, nats per example")
    bits_per_dim: float | None = Field(
        description="the same in bits per dimension; null on continuous data"
    )
    kind: LikelihoodKind = Field(
        description="exact: log P itself; bound: the NLL is an upper bound (variational, "
        "importance-weighted or dequantisation); estimate: a stochastic estimate (see stderr)"
    )
    stderr: float | None = Field(description="standard error of an estimate, nats")
    samples: int | None = Field(description="importance samples behind a bound or an estimate")
    parameters: int | None = Field(description="parameters of the trained model")
    training_seconds: float | None = Field(
        description="worker time spent training, summed over the job's runs"
    )
    epochs: int | None
    steps: int | None
    finished_at: datetime | None


class LeaderboardOut(BaseModel):
    dataset: str
    metric: LeaderboardMetric = Field(description="what entries are ranked by, lower is better")
    split: Literal["test"] = "test"
    entries: list[LeaderboardEntry]


class Ready(BaseModel):
    status: Literal["ready"]
    database: Literal["ok"]
    broker: Literal["ok"]
    workers: int | None = Field(
        None, description="live workers advertising in the broker (informational)"
    )


class Health(BaseModel):
    status: Literal["ok"]


class Index(BaseModel):
    """Where to go from here: the documentation, the OpenAPI document and the resources."""

    name: str
    version: str
    links: dict[str, str]
