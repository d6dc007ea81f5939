"""DeepZoo's Python client: ``deepzoo.Client(url, key)`` and ``deepzoo.AsyncClient``.

Talks to the HTTP API over httpx only; it imports nothing from the service (app/,
models/, workers/), so it runs anywhere the API is reachable. ``deepzoo`` on the command
line is :mod:`deepzoo.cli`. See docs/client.md.
"""

from deepzoo._config import resolve_key, resolve_url
from deepzoo.aio import AsyncClient
from deepzoo.client import Client
from deepzoo.errors import DeepZooError, ProblemError, TransportError, WaitTimeout
from deepzoo.types import (
    TERMINAL,
    Checkpoint,
    Dataset,
    Event,
    Job,
    Key,
    LogProb,
    MetricRow,
    ModelInfo,
    Prediction,
    Progress,
    Samples,
    Sweep,
    SweepChild,
    Trajectory,
)

__all__ = [
    "TERMINAL",
    "AsyncClient",
    "Checkpoint",
    "Client",
    "Dataset",
    "DeepZooError",
    "Event",
    "Job",
    "Key",
    "LogProb",
    "MetricRow",
    "ModelInfo",
    "Prediction",
    "ProblemError",
    "Progress",
    "Samples",
    "Sweep",
    "SweepChild",
    "Trajectory",
    "TransportError",
    "WaitTimeout",
    "resolve_key",
    "resolve_url",
]
