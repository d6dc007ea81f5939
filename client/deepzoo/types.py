"""Typed results: small dataclasses mirroring the API's schemas (``app/schemas.py``).

Each has ``from_dict`` that ignores keys it does not know (a newer API adds fields
freely) and keeps the whole answer in ``raw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL = ("succeeded", "failed", "cancelled")


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class Progress:
    step: int = 0
    total: int = 0
    fraction: float = 0.0
    eta_seconds: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Progress:
        d = d or {}
        return cls(
            int(d.get("step") or 0),
            int(d.get("total") or 0),
            float(d.get("fraction") or 0.0),
            d.get("eta_seconds"),
        )


@dataclass(frozen=True)
class Job:
    """A training job (``JobOut``): its spec with defaults filled in, status, progress,
    the latest value of each metric, the checkpoint inference uses and provenance."""

    id: str
    model: str
    dataset: str
    status: str
    name: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    metrics: dict[str, float | None] = field(default_factory=dict)
    attempts: int = 0
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    checkpoint: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether the job reached a terminal status (succeeded, failed, cancelled)."""
        return self.status in TERMINAL

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(
            id=d["id"],
            model=d.get("model", ""),
            dataset=d.get("dataset", ""),
            status=d.get("status", ""),
            name=d.get("name"),
            spec=dict(d.get("spec") or {}),
            tags=dict(d.get("tags") or {}),
            progress=Progress.from_dict(d.get("progress")),
            metrics=dict(d.get("metrics") or {}),
            attempts=int(d.get("attempts") or 0),
            error=d.get("error"),
            created_at=_time(d.get("created_at")),
            started_at=_time(d.get("started_at")),
            finished_at=_time(d.get("finished_at")),
            checkpoint=d.get("checkpoint"),
            provenance=dict(d.get("provenance") or {}),
            raw=d,
        )


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of a job: ``kind`` is ``status``, ``progress`` or
    ``metrics``; ``id`` numbers the job's events 1, 2, 3, ... without gaps."""

    id: int
    kind: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        """A status event that ends the job (the stream closes after it)."""
        return self.kind == "status" and self.data.get("status") in TERMINAL


@dataclass(frozen=True)
class MetricRow:
    name: str
    step: int
    value: float | None
    time: datetime | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricRow:
        return cls(d["name"], int(d["step"]), d.get("value"), _time(d.get("time")))


@dataclass(frozen=True)
class Checkpoint:
    id: str
    step: int
    is_best: bool
    sha256: str
    size: int
    created_at: datetime | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Checkpoint:
        return cls(
            d["id"],
            int(d["step"]),
            bool(d.get("is_best")),
            d.get("sha256", ""),
            int(d.get("size") or 0),
            _time(d.get("created_at")),
        )


@dataclass(frozen=True)
class ModelInfo:
    """A catalog entry (``GET /v1/models``)."""

    name: str
    description: str
    capabilities: list[str]
    datasets: list[str]
    params_schema: dict[str, Any]
    default_epochs: int | None = None
    default_steps: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        return cls(
            d["name"],
            d.get("description", ""),
            list(d.get("capabilities") or []),
            list(d.get("datasets") or []),
            dict(d.get("params_schema") or {}),
            d.get("default_epochs"),
            d.get("default_steps"),
        )


@dataclass(frozen=True)
class Dataset:
    """A built-in (``kind`` builtin) or one of your uploads (``table``, ``arrays``)."""

    id: str
    name: str
    kind: str
    description: str = ""
    task: str | None = None
    shape: list[int] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Dataset:
        return cls(
            d["id"],
            d.get("name", d["id"]),
            d.get("kind", ""),
            d.get("description") or "",
            d.get("task"),
            d.get("shape"),
            raw=d,
        )


@dataclass(frozen=True)
class Key:
    """An API key as the admin sees it; ``key`` (the secret) only when just created."""

    id: str
    name: str
    owner: str
    prefix: str
    is_admin: bool
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    key: str | None = field(default=None, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Key:
        return cls(
            d["id"],
            d.get("name", ""),
            d.get("owner", ""),
            d.get("prefix", ""),
            bool(d.get("is_admin")),
            _time(d.get("created_at")),
            _time(d.get("revoked_at")),
            d.get("key"),
        )


@dataclass(frozen=True)
class Prediction:
    """``POST /v1/jobs/{id}/predict``: regression fills ``mean`` … ``interval``,
    classification ``probs`` … ``mutual_information``, a multitask model ``tasks``."""

    job_id: str
    checkpoint: str
    task: str
    mc_samples: int
    mean: Any = None
    epistemic_var: Any = None
    aleatoric_var: Any = None
    total_var: Any = None
    interval: dict[str, Any] | None = None
    probs: Any = None
    predictive_entropy: Any = None
    expected_entropy: Any = None
    mutual_information: Any = None
    tasks: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prediction:
        names = (
            "mean epistemic_var aleatoric_var total_var interval probs predictive_entropy "
            "expected_entropy mutual_information tasks"
        ).split()
        return cls(
            d.get("job_id", ""),
            d.get("checkpoint", ""),
            d.get("task", ""),
            int(d.get("mc_samples") or 0),
            **{n: d.get(n) for n in names},
            raw=d,
        )


@dataclass(frozen=True)
class Samples:
    """``GET /v1/jobs/{id}/samples``: one row per sample in the data's units (images
    flattened row-major), as nested lists or, when asked, a numpy array."""

    job_id: str
    checkpoint: str
    samples: Any
    seed: int
    n: int
    label: int | None = None
    temperature: float = 1.0
    gibbs_steps: int | None = None  # the request's sweeps per chain (chain samplers)


@dataclass(frozen=True)
class LogProb:
    """``POST /v1/jobs/{id}/log-prob``: per input, nats and bits per dimension; ``exact``
    false for a bound (``kind`` "bound", with ``k`` importance samples) or an estimate
    (``kind`` "estimate": an AIS log Z with ``k`` runs and standard error ``stderr``)."""

    job_id: str
    checkpoint: str
    log_prob: list[float | None]
    bits_per_dim: list[float | None]
    exact: bool
    k: int | None = None
    kind: str = "exact"
    stderr: float | None = None


@dataclass(frozen=True)
class Trajectory:
    """``GET /v1/jobs/{id}/trajectory`` (the optimizer lab, ``optim``): the path of the
    job's optimizer over its landscape from the start (step 0) through each logged step,
    at most 2,000 points (``subsampled`` when the run logged more). ``path`` holds (w0,
    w1) per point, ``loss`` f(w), ``grad_norm`` and ``step_norm`` the step's ‖∇f‖ and
    length (None at the start, or where not finite); numpy arrays with ``array=True``
    (NaN for None). ``minimum`` is the landscape's known f*, ``converged_step`` the first
    step within ``params.tolerance`` of it (None: not yet)."""

    job_id: str
    landscape: str
    optimizer: dict[str, Any]
    dim: int
    steps: Any
    loss: Any
    path: Any
    grad_norm: Any
    step_norm: Any
    minimum: float | None = None
    converged_step: int | None = None
    subsampled: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        return cls(
            job_id=d.get("job_id", ""),
            landscape=d.get("landscape", ""),
            optimizer=dict(d.get("optimizer") or {}),
            dim=int(d.get("dim") or 0),
            steps=list(d.get("steps") or []),
            loss=list(d.get("loss") or []),
            path=[list(p) for p in d.get("path") or []],
            grad_norm=list(d.get("grad_norm") or []),
            step_norm=list(d.get("step_norm") or []),
            minimum=d.get("minimum"),
            converged_step=d.get("converged_step"),
            subsampled=bool(d.get("subsampled")),
            raw=d,
        )


@dataclass(frozen=True)
class SweepChild:
    """One child of a sweep: its number, the values it varies, its job and, once it
    succeeded, its final metric. ``status`` is the job's, or ``deleted`` or ``refused``."""

    number: int
    values: dict[str, Any]
    status: str
    job_id: str | None = None
    metric: float | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepChild:
        return cls(
            number=int(d["number"]),
            values=dict(d.get("values") or {}),
            status=d.get("status", ""),
            job_id=d.get("job_id"),
            metric=d.get("metric"),
            error=d.get("error"),
        )


@dataclass(frozen=True)
class Sweep:
    """A hyperparameter sweep (``SweepOut``): its children best first by ``goal``."""

    id: str
    status: str
    method: str
    metric: str
    goal: str
    trials: int
    name: str | None = None
    parallel: int = 1
    seed: int = 0
    grid: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    best: SweepChild | None = None
    children: list[SweepChild] = field(default_factory=list)
    created_at: datetime | None = None
    finished_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether the sweep is over (finished or cancelled)."""
        return self.status != "running"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sweep:
        best = d.get("best")
        return cls(
            id=d["id"],
            status=d.get("status", ""),
            method=d.get("method", ""),
            metric=d.get("metric", ""),
            goal=d.get("goal", ""),
            trials=int(d.get("trials") or 0),
            name=d.get("name"),
            parallel=int(d.get("parallel") or 1),
            seed=int(d.get("seed") or 0),
            grid=dict(d.get("grid") or {}),
            spec=dict(d.get("spec") or {}),
            counts=dict(d.get("counts") or {}),
            best=SweepChild.from_dict(best) if best else None,
            children=[SweepChild.from_dict(c) for c in d.get("children") or []],
            created_at=_time(d.get("created_at")),
            finished_at=_time(d.get("finished_at")),
            raw=d,
        )
