"""``Client``, blocking; ``deepzoo.aio.AsyncClient`` has the same methods, awaitable.

Both send ``Authorization: Bearer <key>``, raise every problem document as
:class:`~deepzoo.ProblemError`, and retry 429 and 503 answers (honouring ``Retry-After``)
and broken connections of requests that are safe to resend, with exponential backoff and
jitter, a bounded number of times.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import httpx

from deepzoo import _core as core
from deepzoo._config import resolve_key, resolve_url
from deepzoo._core import Call, Op, Retry, job_id
from deepzoo.errors import DeepZooError, ProblemError, TransportError, WaitTimeout
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

log = logging.getLogger("deepzoo.client")
T = TypeVar("T")
# the stream sends a keep-alive every 15 s: a minute of silence is a dead connection
STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)


def _as_array(value: Any) -> Any:
    try:
        import numpy as np
    except ImportError as exc:  # pragma: no cover - numpy ships with the project
        raise DeepZooError("array=True needs numpy (pip install numpy)") from exc
    return np.array([[np.nan if v is None else v for v in row] for row in value], dtype=float)


def _trajectory_arrays(t: Trajectory) -> Trajectory:
    """The trajectory with its series as numpy arrays: ``path`` (n, 2), the rest (n,)."""
    import numpy as np

    def vector(values: list[Any]) -> Any:
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    return dataclasses.replace(
        t,
        steps=np.array(t.steps, dtype=np.int64),
        loss=vector(t.loss),
        path=_as_array(t.path).reshape(-1, 2),
        grad_norm=vector(t.grad_norm),
        step_norm=vector(t.step_norm),
    )


def _metrics_array(rows: list[MetricRow], name: str | None) -> Any:
    """(n, 2) arrays of step and value (NaN where not finite): one for ``name``, else a
    dict of one per metric name."""
    by_name: dict[str, list[list[float | None]]] = {}
    for r in rows:
        by_name.setdefault(r.name, []).append([r.step, r.value])
    arrays = {n: _as_array(v) for n, v in by_name.items()}
    if name is not None:
        return arrays.get(name, _as_array([]).reshape(0, 2))
    return arrays


class _Base:
    def __init__(
        self,
        url: str | None,
        key: str | None,
        timeout: float,
        retries: int,
        backoff: float,
        max_wait: float,
    ) -> None:
        self.url = resolve_url(url)
        self.key = resolve_key(key)
        self.retry = Retry(attempts=retries, backoff=backoff, max_wait=max_wait)
        self.timeout = timeout
        self.headers = {"User-Agent": "deepzoo-client"}
        if self.key:
            self.headers["Authorization"] = f"Bearer {self.key}"

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
        return http.build_request(
            call.method,
            call.path,
            params=call.params,
            json=call.json,
            files=call.files,
            data=call.data,
            headers=call.headers,
        )

    def _transport_retry(self, call: Call, exc: httpx.TransportError, attempt: int) -> float:
        """The delay before resending after ``exc``, or raise when not safe or spent."""
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        hopeless = isinstance(exc, httpx.UnsupportedProtocol)  # a URL without http(s)://
        if hopeless or attempt >= self.retry.attempts or not (never_sent or call.idempotent):
            raise TransportError(
                f"{call.method} {self.url}{call.path}: {type(exc).__name__}: {exc}"
                + (f" (after {attempt} retries)" if attempt else "")
            ) from exc
        wait = self.retry.delay(attempt)
        log.info("%s %s: %s; retrying in %.2fs", call.method, call.path, exc, wait)
        return wait

    def _status_retry(self, call: Call, r: httpx.Response, attempt: int) -> float | None:
        """The delay before resending a 429 or 503, or None to hand the answer back."""
        if r.status_code not in core.RETRY_STATUSES or attempt >= self.retry.attempts:
            return None
        wait = self.retry.delay(attempt, r)
        log.info(
            "%s %s: %d (Retry-After %s); retry %d/%d in %.2fs",
            call.method,
            call.path,
            r.status_code,
            r.headers.get("Retry-After"),
            attempt + 1,
            self.retry.attempts,
            wait,
        )
        return wait


class Client(_Base):
    """A blocking client. ``url`` and ``key`` default to ``DEEPZOO_URL`` and
    ``DEEPZOO_API_KEY``, then to what ``make run`` serves and writes
    (``http://127.0.0.1:8000``, ``./var/admin.key``)::

        import deepzoo

        with deepzoo.Client() as dz:
            job = dz.submit({"model": "mlp", "dataset": "moons", "train": {"epochs": 5}})
            for event in dz.follow(job):
                print(event.kind, event.data)
            print(dz.job(job).metrics)
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_wait: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, key, timeout, retries, backoff, max_wait)
        self.http = httpx.Client(
            base_url=self.url, headers=self.headers, timeout=timeout, transport=transport
        )
        self.datasets = Datasets(self)
        self.keys = Keys(self)
        self.sweeps = Sweeps(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def send(self, call: Call) -> httpx.Response:
        """One call, retried as the class docstring says; a problem raised."""
        attempt = 0
        while True:
            try:
                r = self.http.send(self._request(self.http, call))
            except httpx.TransportError as exc:
                time.sleep(self._transport_retry(call, exc, attempt))
                attempt += 1
                continue
            wait = self._status_retry(call, r, attempt)
            if wait is None:
                break
            r.close()
            time.sleep(wait)
            attempt += 1
        if r.is_error:
            raise core.problem(r)
        return r

    def _run(self, op: Op[T]) -> T:
        try:
            call = next(op)
            while True:
                try:
                    r = self.send(call)
                except ProblemError as exc:
                    call = op.throw(exc)
                else:
                    call = op.send(r)
        except StopIteration as done:
            return done.value

    # ---- catalog and jobs -------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        """The catalog: every family, its capabilities, datasets and params schema."""
        return self._run(core.models())

    def model(self, name: str) -> ModelInfo:
        return self._run(core.model(name))

    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> Job:
        """POST a job spec; the queued Job. Sent with an ``Idempotency-Key`` (a fresh one
        unless given), so a retry after a lost answer never makes a second job."""
        return self._run(core.submit(spec, idempotency_key))

    def job(self, job: Job | str) -> Job:
        return self._run(core.job(job))

    def jobs(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        dataset: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Your jobs, newest first, at most ``limit`` (the pages are followed for you)."""
        return self._run(core.jobs(status, model, dataset, limit))

    def cancel(self, job: Job | str) -> Job:
        return self._run(core.action(job, "cancel"))

    def resume(
        self,
        job: Job | str,
        *,
        epochs: int | None = None,
        steps: int | None = None,
        max_minutes: float | None = None,
    ) -> Job:
        """Continue a failed or cancelled job from its last checkpoint, optionally longer."""
        body = core._clean({"epochs": epochs, "steps": steps, "max_minutes": max_minutes})
        return self._run(core.action(job, "resume", body or None))

    def clone(self, job: Job | str, **overrides: Any) -> Job:
        """A new job from the same spec; ``overrides`` (dataset, params, optimizer, train,
        name, tags) merge key by key."""
        return self._run(core.action(job, "clone", overrides))

    def delete(self, job: Job | str) -> None:
        """Delete a finished job, its metrics, events and checkpoints."""
        self._run(core.delete_job(job))

    def wait(self, job: Job | str, timeout: float | None = None, poll: float = 0.5) -> Job:
        """Block until the job is finished (any terminal status: check ``status``);
        :class:`~deepzoo.WaitTimeout` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.1, poll)
        while True:
            current = self.job(job)
            if current.done:
                return current
            if deadline is not None and time.monotonic() + delay > deadline:
                raise WaitTimeout(f"job {current.id} still {current.status} after {timeout}s")
            time.sleep(delay)
            delay = min(poll, delay * 2)

    def follow(
        self, job: Job | str, *, last_event_id: int = 0, reconnects: int = 10
    ) -> Iterator[Event]:
        """The job's events (``GET /v1/jobs/{id}/events``) until its terminal status.

        A dropped connection is resumed with ``Last-Event-ID``: no event is lost or seen
        twice. ``reconnects`` bounds the failures in a row (any event resets it).
        """
        jid, last, failures = job_id(job), last_event_id, 0
        path = f"/v1/jobs/{jid}/events"
        while True:
            parser = core.SSEParser()
            headers = {"Last-Event-ID": str(last)} if last else {}
            wait: float | None = None
            try:
                with self.http.stream("GET", path, headers=headers, timeout=STREAM_TIMEOUT) as r:
                    if r.status_code in core.RETRY_STATUSES:
                        r.read()
                        wait = self.retry.delay(failures, r)
                    elif r.is_error:
                        r.read()
                        raise core.problem(r)
                    else:
                        for line in r.iter_lines():
                            event = parser.feed(line)
                            if event is None or event.id <= last:
                                continue
                            last, failures = event.id, 0
                            yield event
                            if event.terminal:
                                return
            except httpx.TransportError as exc:
                log.info("event stream of %s broke after event %d: %s", jid, last, exc)
            failures += 1
            if failures > reconnects:
                raise TransportError(f"event stream of {jid}: gave up after {reconnects} tries")
            if wait is None:
                retry_s = (parser.retry_ms or 1000) / 1000
                wait = min(self.retry.max_backoff, retry_s * 2 ** (failures - 1))
            time.sleep(wait)

    # ---- metrics, checkpoints, inference ----------------------------------------------

    @overload
    def metrics(
        self,
        job: Job | str,
        *,
        name: str | None = None,
        since_step: int | None = None,
        array: Literal[False] = False,
    ) -> list[MetricRow]: ...

    @overload
    def metrics(
        self,
        job: Job | str,
        *,
        name: str | None = None,
        since_step: int | None = None,
        array: Literal[True],
    ) -> Any: ...

    def metrics(
        self,
        job: Job | str,
        *,
        name: str | None = None,
        since_step: int | None = None,
        array: bool = False,
    ) -> Any:
        """Every logged value as rows (name, step, value, time), ordered by name then
        step. ``array=True``: numpy arrays of (step, value) rows, NaN where not finite:
        one array when ``name`` is given, else a dict of one per metric."""
        rows = self._run(core.metrics(job, name, since_step))
        return _metrics_array(rows, name) if array else rows

    def metrics_csv(self, job: Job | str, *, name: str | None = None) -> str:
        """The metrics as the API's CSV (``name,step,value,time``)."""
        return self._run(core.metrics_csv(job, name))

    def checkpoints(self, job: Job | str) -> list[Checkpoint]:
        return self._run(core.checkpoints(job))

    def checkpoint(self, job: Job | str, checkpoint_id: str) -> bytes:
        """One checkpoint's bytes (safetensors)."""
        out = self.get(f"/v1/jobs/{job_id(job)}/checkpoints/{checkpoint_id}")
        return bytes(out)

    def predict(
        self,
        job: Job | str,
        inputs: list[Any],
        *,
        mc_samples: int | None = None,
        seed: int = 0,
        level: float | None = None,
    ) -> Prediction:
        """Predictions with epistemic and aleatoric uncertainty (or class probabilities)."""
        return self._run(core.predict(job, inputs, mc_samples, seed, level))

    @overload
    def samples(
        self,
        job: Job | str,
        n: int = 16,
        *,
        seed: int = 0,
        label: int | None = None,
        temperature: float | None = None,
        gibbs_steps: int | None = None,
        checkpoint: str | None = None,
        format: Literal["json"] = "json",
        array: bool = False,
    ) -> Samples: ...

    @overload
    def samples(
        self,
        job: Job | str,
        n: int = 16,
        *,
        seed: int = 0,
        label: int | None = None,
        temperature: float | None = None,
        gibbs_steps: int | None = None,
        checkpoint: str | None = None,
        format: Literal["png"],
        array: bool = False,
    ) -> bytes: ...

    def samples(
        self,
        job: Job | str,
        n: int = 16,
        *,
        seed: int = 0,
        label: int | None = None,
        temperature: float | None = None,
        gibbs_steps: int | None = None,
        checkpoint: str | None = None,
        format: Literal["json", "png"] = "json",
        array: bool = False,
    ) -> Samples | bytes:
        """``n`` samples (same seed, same samples): rows in the data's units (a numpy
        array with ``array=True``), or with ``format="png"`` the PNG's bytes (an image
        grid, or a scatter over the training data for 2-D sets). ``gibbs_steps``: the
        sweeps of each chain, for models that sample by Markov chains (RBM, Boltzmann
        machine; the catalog's capability ``chain``)."""
        params = {
            "n": n,
            "seed": seed,
            "label": label,
            "temperature": temperature,
            "gibbs_steps": gibbs_steps,
            "checkpoint": checkpoint,
            "format": format,
        }
        out = self._run(core.samples(job, params))
        if array and isinstance(out, Samples):
            out = dataclasses.replace(out, samples=_as_array(out.samples))
        return out

    def log_prob(
        self,
        job: Job | str,
        inputs: list[Any],
        *,
        labels: list[int] | None = None,
        k: int | None = None,
    ) -> LogProb:
        """log p per input in nats and bits per dimension (``exact`` false: a bound)."""
        return self._run(core.log_prob(job, inputs, labels, k))

    def trajectory(self, job: Job | str, *, array: bool = False) -> Trajectory:
        """The optimizer lab's path (``optim`` jobs; others are a 409): (w0, w1), f(w),
        ‖∇f‖ and the step's length from the start (step 0) through each logged step, at
        most 2,000 points; live while the job trains. ``array=True``: numpy arrays, NaN
        where the API says null."""
        out = self._run(core.trajectory(job))
        return _trajectory_arrays(out) if array else out

    def trajectory_png(self, job: Job | str) -> bytes:
        """The path drawn on the landscape's contours (``trajectory.png``), PNG bytes."""
        return self._run(core.trajectory_png(job))

    def picture(self, job: Job | str) -> tuple[str, bytes]:
        """The job's main picture, chosen from its model's capabilities: an episode GIF,
        samples, the uncertainty plot or a reliability diagram, ... as (file name, bytes)."""
        return self._run(core.main_picture(job))

    # ---- the escape hatch -------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET any route: JSON as Python values, pictures and CSV as bytes."""
        return self._run(core.raw("GET", path, params, None))

    def post(self, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """POST any route (``act``, ``rollout``, ``encode``, ``acquire``, ...)."""
        return self._run(core.raw("POST", path, params, json))


class Datasets:
    """``client.datasets()`` lists built-ins and your uploads; ``.upload`` adds one."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def __call__(self) -> list[Dataset]:
        return self._c._run(core.datasets())

    def get(self, dataset_id: str) -> Dataset:
        return self._c._run(core.dataset(dataset_id))

    def upload(
        self,
        file: str | Path | bytes,
        name: str | None = None,
        *,
        target: str | None = None,
        task: Literal["regression", "classification"] | None = None,
        filename: str | None = None,
    ) -> Dataset:
        """Upload a CSV (``target``: the column to predict) or an ``.npz`` of ``x`` and
        ``y``, from a path or bytes; the kind is told by the bytes. ``name`` defaults to
        the file's stem."""
        return self._c._run(core.upload(file, name, target, task, filename))

    def delete(self, dataset_id: str) -> None:
        self._c._run(core.delete_dataset(dataset_id))


class Keys:
    """Admin only: ``client.keys()`` lists keys; ``create`` and ``revoke``."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def __call__(self) -> list[Key]:
        return self._c._run(core.keys())

    def create(self, name: str, *, admin: bool = False, owner: str | None = None) -> Key:
        """A new key (its secret in ``.key``, shown only now); ``owner`` shares one."""
        return self._c._run(core.create_key(name, admin, owner))

    def revoke(self, key_id: str) -> None:
        self._c._run(core.revoke_key(key_id))


class Sweeps:
    """``client.sweeps()`` lists your sweeps, newest first; ``create``, ``get``, ``wait``,
    ``cancel`` and ``plot`` (the children's curves overlaid, PNG bytes)."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def __call__(self, *, status: str | None = None, limit: int = 20) -> list[Sweep]:
        """Your sweeps, newest first, at most ``limit`` (the pages are followed for you)."""
        return self._c._run(core.sweeps(status, limit))

    def create(
        self,
        spec: dict[str, Any],
        grid: dict[str, Any],
        *,
        method: Literal["grid", "random", "tpe"] = "grid",
        trials: int | None = None,
        parallel: int = 4,
        metric: str = "val_loss",
        goal: Literal["min", "max"] = "min",
        seed: int = 0,
        name: str | None = None,
        idempotency_key: str | None = None,
    ) -> Sweep:
        """Children of ``spec`` over ``grid`` (dotted path -> values, or for random and
        tpe ``{"low", "high", "log"}``), ranked by ``metric``; see docs/api.md#sweeps.
        Sent with an ``Idempotency-Key`` (a fresh one unless given), so a retry after a
        lost answer never makes a second sweep; the same key again returns that sweep."""
        body = core._clean(
            {"spec": spec, "grid": grid, "method": method, "trials": trials,
             "parallel": parallel, "metric": metric, "goal": goal, "seed": seed, "name": name}
        )  # fmt: skip
        return self._c._run(core.create_sweep(body, idempotency_key))

    def get(self, sweep: Sweep | str) -> Sweep:
        return self._c._run(core.sweep(sweep))

    def cancel(self, sweep: Sweep | str) -> Sweep:
        return self._c._run(core.cancel_sweep(sweep))

    def plot(self, sweep: Sweep | str) -> bytes:
        return self._c._run(core.sweep_plot(sweep))

    def wait(self, sweep: Sweep | str, timeout: float | None = None, poll: float = 1.0) -> Sweep:
        """Block until the sweep is over (finished or cancelled); :class:`~deepzoo.WaitTimeout`
        after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.get(sweep)
            if current.done:
                return current
            if deadline is not None and time.monotonic() + poll > deadline:
                raise WaitTimeout(f"sweep {current.id} still running after {timeout}s")
            time.sleep(poll)
