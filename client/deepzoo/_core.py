"""What the sync and async clients share: requests described as data (``Call``), the
operations as generators that yield calls and receive responses (so one body serves both
clients), problem documents, retry delays and the SSE parser."""

from __future__ import annotations

import email.utils
import json
import random
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from deepzoo.errors import ProblemError
from deepzoo.types import (
    Checkpoint,
    Dataset,
    Event,
    Job,
    Key,
    LogProb,
    MetricRow,
    ModelInfo,
    Prediction,
    Samples,
    Sweep,
    Trajectory,
)

T = TypeVar("T")
RETRY_STATUSES = (429, 503)
# what the server sends (app/problems.py); other errors are wrapped in the same type
PROBLEM = "application/problem+json"


@dataclass
class Call:
    """One HTTP request. ``idempotent``: safe to send again after the connection broke
    mid-request (reads, and job and sweep creation with their ``Idempotency-Key``)."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    idempotent: bool = True


Op = Generator[Call, httpx.Response, T]


def job_id(job: Job | str) -> str:
    return job.id if isinstance(job, Job) else str(job)


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def problem(response: httpx.Response) -> ProblemError:
    """The response's problem document as a ``ProblemError`` (any error body works)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": response.text[:500] or response.reason_phrase}
    errors = body.get("errors")
    return ProblemError(
        int(body.get("status") or response.status_code),
        str(body.get("title") or response.reason_phrase or "Error"),
        str(body.get("detail") or ""),
        type=str(body.get("type") or "about:blank"),
        errors=errors if isinstance(errors, list) else None,
        instance=body.get("instance"),
        retry_after=retry_after(response),
        body=body,
    )


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Retry:
    """Bounded retries with exponential backoff and jitter. ``Retry-After`` wins when
    the server sends it (never waiting longer than ``max_wait``)."""

    attempts: int = 5  # retries after the first try
    backoff: float = 0.5  # the first delay, doubled each retry
    max_backoff: float = 30.0
    max_wait: float = 120.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        told = retry_after(response) if response is not None else None
        if told is not None:  # honoured, plus a little jitter so clients do not stampede
            return min(self.max_wait, told + random.uniform(0, min(1.0, 0.1 * told + 0.05)))
        base = min(self.max_backoff, self.backoff * 2**attempt)
        return base * random.uniform(0.5, 1.0)


class SSEParser:
    """Server-Sent Events, line by line (the WHATWG event-stream format)."""

    def __init__(self) -> None:
        self.retry_ms: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        """One line without its end; the event it completes, if any."""
        if line == "":
            event = None
            if self._data and self._id is not None:
                data = "\n".join(self._data)
                try:
                    parsed = json.loads(data)
                except ValueError:
                    parsed = {"data": data}
                event = Event(int(self._id), self._event, parsed)
            self._reset()
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and value.isdigit():
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None


# ---- the operations, shared by Client and AsyncClient ----------------------------------


def models() -> Op[list[ModelInfo]]:
    r = yield Call("GET", "/v1/models")
    return [ModelInfo.from_dict(m) for m in r.json()]


def model(name: str) -> Op[ModelInfo]:
    r = yield Call("GET", f"/v1/models/{name}")
    return ModelInfo.from_dict(r.json())


def datasets() -> Op[list[Dataset]]:
    r = yield Call("GET", "/v1/datasets")
    return [Dataset.from_dict(d) for d in r.json()]


def dataset(dataset_id: str) -> Op[Dataset]:
    r = yield Call("GET", f"/v1/datasets/{dataset_id}")
    return Dataset.from_dict(r.json())


def upload(
    file: str | Path | bytes,
    name: str | None,
    target: str | None,
    task: str | None,
    filename: str | None,
) -> Op[Dataset]:
    if isinstance(file, bytes):
        content, filename = file, filename or "upload"
    else:
        path = Path(file)
        content, filename = path.read_bytes(), filename or path.name
        name = name or path.stem
    form = _clean({"name": name or filename, "target": target, "task": task})
    # bytes, not a file object: a retried request sends the same body again
    r = yield Call("POST", "/v1/datasets", files={"file": (filename, content)}, data=form)
    return Dataset.from_dict(r.json())


def delete_dataset(dataset_id: str) -> Op[None]:
    yield Call("DELETE", f"/v1/datasets/{dataset_id}")


def submit(spec: dict[str, Any], idempotency_key: str | None) -> Op[Job]:
    # the API honours Idempotency-Key: a retried submission returns the same job
    key = idempotency_key or f"deepzoo-{uuid.uuid4()}"
    r = yield Call("POST", "/v1/jobs", json=spec, headers={"Idempotency-Key": key})
    return Job.from_dict(r.json())


def job(job: Job | str) -> Op[Job]:
    r = yield Call("GET", f"/v1/jobs/{job_id(job)}")
    return Job.from_dict(r.json())


def pages(path: str, params: dict[str, Any], limit: int, page_max: int) -> Op[list[Any]]:
    """A newest-first list's items (JSON), following ``next_cursor`` until ``limit``."""
    out: list[Any] = []
    cursor = None
    while len(out) < limit:
        page = {"limit": min(page_max, limit - len(out)), "cursor": cursor}
        r = yield Call("GET", path, params=_clean(params | page))
        body = r.json()
        out += body["items"]
        cursor = body.get("next_cursor")
        if not cursor or not body["items"]:
            break
    return out


def jobs(status: str | None, model: str | None, dataset: str | None, limit: int) -> Op[list[Job]]:
    """Newest first, following the cursor until ``limit`` jobs (pages of at most 200)."""
    params = {"status": status, "model": model, "dataset": dataset}
    return [Job.from_dict(j) for j in (yield from pages("/v1/jobs", params, limit, 200))]


def action(job: Job | str, verb: str, body: dict[str, Any] | None = None) -> Op[Job]:
    # cancel and resume of the same job twice land in the same state: safe to resend
    r = yield Call("POST", f"/v1/jobs/{job_id(job)}/{verb}", json=body, idempotent=verb != "clone")
    return Job.from_dict(r.json())


def delete_job(job: Job | str) -> Op[None]:
    yield Call("DELETE", f"/v1/jobs/{job_id(job)}")


def metrics(job: Job | str, name: str | None, since_step: int | None) -> Op[list[MetricRow]]:
    params = _clean({"name": name, "since_step": since_step})
    r = yield Call("GET", f"/v1/jobs/{job_id(job)}/metrics", params=params)
    return [MetricRow.from_dict(m) for m in r.json()["metrics"]]


def metrics_csv(job: Job | str, name: str | None) -> Op[str]:
    params = _clean({"name": name, "format": "csv"})
    r = yield Call("GET", f"/v1/jobs/{job_id(job)}/metrics", params=params)
    return r.text


def checkpoints(job: Job | str) -> Op[list[Checkpoint]]:
    r = yield Call("GET", f"/v1/jobs/{job_id(job)}/checkpoints")
    return [Checkpoint.from_dict(c) for c in r.json()]


def predict(
    job: Job | str, inputs: list[Any], mc_samples: int | None, seed: int, level: float | None
) -> Op[Prediction]:
    body = _clean({"inputs": inputs, "mc_samples": mc_samples, "seed": seed})
    params = _clean({"level": level})
    r = yield Call("POST", f"/v1/jobs/{job_id(job)}/predict", params=params, json=body)
    return Prediction.from_dict(r.json())


def samples(job: Job | str, params: dict[str, Any]) -> Op[Samples | bytes]:
    r = yield Call("GET", f"/v1/jobs/{job_id(job)}/samples", params=_clean(params))
    if params.get("format") == "png":
        return r.content
    d = r.json()
    return Samples(
        d["job_id"],
        d["checkpoint"],
        d["samples"],
        d["seed"],
        d["n"],
        d.get("label"),
        d.get("temperature", 1.0),
        d.get("gibbs_steps"),
    )


def log_prob(
    job: Job | str, inputs: list[Any], labels: list[int] | None, k: int | None
) -> Op[LogProb]:
    body = _clean({"inputs": inputs, "labels": labels, "k": k})
    r = yield Call("POST", f"/v1/jobs/{job_id(job)}/log-prob", json=body)
    d = r.json()
    return LogProb(
        d["job_id"],
        d["checkpoint"],
        d["log_prob"],
        d["bits_per_dim"],
        d["exact"],
        d.get("k"),
        d.get("kind", "exact" if d["exact"] else "bound"),
        d.get("stderr"),
    )


def trajectory(job: Job | str) -> Op[Trajectory]:
    r = yield Call("GET", f"/v1/jobs/{job_id(job)}/trajectory")
    return Trajectory.from_dict(r.json())


def trajectory_png(job: Job | str) -> Op[bytes]:
    r = yield Call("GET", f"/v1/jobs/{job_id(job)}/trajectory.png")
    return r.content


# a job's main picture, by capability, in the order the dashboard shows them: the first
# route that does not answer 409 (e.g. plot.png is for 1-D regression only) wins
PICTURES: list[tuple[str, str, dict[str, Any]]] = [
    ("act", "episode.gif", {}),
    ("trajectory", "trajectory.png", {}),
    ("sample", "samples", {"format": "png", "n": 64}),
    ("predict", "plot.png", {}),
    ("predict", "reliability.png", {}),
    ("embed", "embedding.png", {}),
]


def main_picture(job: Job | str) -> Op[tuple[str, bytes]]:
    r = yield Call("GET", f"/v1/jobs/{job_id(job)}")
    caps_r = yield Call("GET", f"/v1/models/{r.json()['model']}")
    caps = set(caps_r.json()["capabilities"])
    tried = []
    for cap, route, params in PICTURES:
        if cap not in caps:
            continue
        tried.append(route)
        try:
            pic = yield Call("GET", f"/v1/jobs/{job_id(job)}/{route}", params=params)
        except ProblemError as exc:
            if exc.status in (404, 409) and not exc.detail.startswith("no job"):
                continue  # not this kind of data (or no such route yet): the next one
            raise
        suffix = ".gif" if route.endswith(".gif") else ".png"
        return route.removesuffix(".png").removesuffix(".gif") + suffix, pic.content
    raise ProblemError(
        409,
        "Conflict",
        f"no picture for this job (tried {', '.join(tried) or 'none'}; capabilities: "
        f"{', '.join(sorted(caps))})",
    )


def keys() -> Op[list[Key]]:
    r = yield Call("GET", "/v1/keys")
    return [Key.from_dict(k) for k in r.json()]


def create_key(name: str, admin: bool, owner: str | None) -> Op[Key]:
    body = _clean({"name": name, "admin": admin, "owner": owner})
    r = yield Call("POST", "/v1/keys", json=body, idempotent=False)
    return Key.from_dict(r.json())


def revoke_key(key_id: str) -> Op[None]:
    yield Call("DELETE", f"/v1/keys/{key_id}")


def sweep_id(sweep: Sweep | str) -> str:
    return sweep.id if isinstance(sweep, Sweep) else str(sweep)


def create_sweep(body: dict[str, Any], idempotency_key: str | None) -> Op[Sweep]:
    # the API honours Idempotency-Key: a retried creation returns the same sweep
    key = idempotency_key or f"deepzoo-{uuid.uuid4()}"
    r = yield Call("POST", "/v1/sweeps", json=body, headers={"Idempotency-Key": key})
    return Sweep.from_dict(r.json())


def sweep(sweep: Sweep | str) -> Op[Sweep]:
    r = yield Call("GET", f"/v1/sweeps/{sweep_id(sweep)}")
    return Sweep.from_dict(r.json())


def sweeps(status: str | None, limit: int) -> Op[list[Sweep]]:
    """Newest first, following the cursor until ``limit`` sweeps (pages of at most 100)."""
    items = yield from pages("/v1/sweeps", {"status": status}, limit, 100)
    return [Sweep.from_dict(s) for s in items]


def cancel_sweep(sweep: Sweep | str) -> Op[Sweep]:
    r = yield Call("POST", f"/v1/sweeps/{sweep_id(sweep)}/cancel")
    return Sweep.from_dict(r.json())


def sweep_plot(sweep: Sweep | str) -> Op[bytes]:
    r = yield Call("GET", f"/v1/sweeps/{sweep_id(sweep)}/plot.png")
    return r.content


def raw(method: str, path: str, params: dict[str, Any] | None, body: Any) -> Op[Any]:
    """JSON back as Python values; anything else (PNG, GIF, CSV) as bytes."""
    r = yield Call(method, path, params=params, json=body, idempotent=method in ("GET", "DELETE"))
    if r.status_code == 204 or not r.content:
        return None
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()
    return r.content
