"""``AsyncClient``: the methods of :class:`deepzoo.Client`, awaitable (same retries,
same problems, ``follow`` an async iterator)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

from deepzoo import _core as core
from deepzoo._core import Call, Op, job_id
from deepzoo.client import (
    STREAM_TIMEOUT,
    _as_array,
    _Base,
    _metrics_array,
    _trajectory_arrays,
    log,
)
from deepzoo.errors import ProblemError, TransportError, WaitTimeout
from deepzoo.types import (
    Checkpoint,
    Dataset,
    Event,
    Job,
    Key,
    LogProb,
    ModelInfo,
    Prediction,
    Samples,
    Sweep,
    Trajectory,
)

T = TypeVar("T")


class AsyncClient(_Base):
    """The same methods as :class:`Client`, awaitable; ``follow`` is an async iterator::

    async with deepzoo.AsyncClient() as dz:
        job = await dz.submit(spec)
        async for event in dz.follow(job):
            ...
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, key, timeout, retries, backoff, max_wait)
        self.http = httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=timeout, transport=transport
        )
        self.datasets = AsyncDatasets(self)
        self.keys = AsyncKeys(self)
        self.sweeps = AsyncSweeps(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                r = await self.http.send(self._request(self.http, call))
            except httpx.TransportError as exc:
                await asyncio.sleep(self._transport_retry(call, exc, attempt))
                attempt += 1
                continue
            wait = self._status_retry(call, r, attempt)
            if wait is None:
                break
            await r.aclose()
            await asyncio.sleep(wait)
            attempt += 1
        if r.is_error:
            raise core.problem(r)
        return r

    async def _run(self, op: Op[T]) -> T:
        try:
            call = next(op)
            while True:
                try:
                    r = await self.send(call)
                except ProblemError as exc:
                    call = op.throw(exc)
                else:
                    call = op.send(r)
        except StopIteration as done:
            return done.value

    async def models(self) -> list[ModelInfo]:
        return await self._run(core.models())

    async def model(self, name: str) -> ModelInfo:
        return await self._run(core.model(name))

    async def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> Job:
        return await self._run(core.submit(spec, idempotency_key))

    async def job(self, job: Job | str) -> Job:
        return await self._run(core.job(job))

    async def jobs(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        dataset: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        return await self._run(core.jobs(status, model, dataset, limit))

    async def cancel(self, job: Job | str) -> Job:
        return await self._run(core.action(job, "cancel"))

    async def resume(
        self,
        job: Job | str,
        *,
        epochs: int | None = None,
        steps: int | None = None,
        max_minutes: float | None = None,
    ) -> Job:
        body = core._clean({"epochs": epochs, "steps": steps, "max_minutes": max_minutes})
        return await self._run(core.action(job, "resume", body or None))

    async def clone(self, job: Job | str, **overrides: Any) -> Job:
        return await self._run(core.action(job, "clone", overrides))

    async def delete(self, job: Job | str) -> None:
        await self._run(core.delete_job(job))

    async def wait(self, job: Job | str, timeout: float | None = None, poll: float = 0.5) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.1, poll)
        while True:
            current = await self.job(job)
            if current.done:
                return current
            if deadline is not None and time.monotonic() + delay > deadline:
                raise WaitTimeout(f"job {current.id} still {current.status} after {timeout}s")
            await asyncio.sleep(delay)
            delay = min(poll, delay * 2)

    async def follow(
        self, job: Job | str, *, last_event_id: int = 0, reconnects: int = 10
    ) -> AsyncIterator[Event]:
        jid, last, failures = job_id(job), last_event_id, 0
        path = f"/v1/jobs/{jid}/events"
        while True:
            parser = core.SSEParser()
            headers = {"Last-Event-ID": str(last)} if last else {}
            wait: float | None = None
            try:
                async with self.http.stream(
                    "GET", path, headers=headers, timeout=STREAM_TIMEOUT
                ) as r:
                    if r.status_code in core.RETRY_STATUSES:
                        await r.aread()
                        wait = self.retry.delay(failures, r)
                    elif r.is_error:
                        await r.aread()
                        raise core.problem(r)
                    else:
                        async for line in r.aiter_lines():
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
            await asyncio.sleep(wait)

    async def metrics(
        self,
        job: Job | str,
        *,
        name: str | None = None,
        since_step: int | None = None,
        array: bool = False,
    ) -> Any:
        rows = await self._run(core.metrics(job, name, since_step))
        return _metrics_array(rows, name) if array else rows

    async def metrics_csv(self, job: Job | str, *, name: str | None = None) -> str:
        return await self._run(core.metrics_csv(job, name))

    async def checkpoints(self, job: Job | str) -> list[Checkpoint]:
        return await self._run(core.checkpoints(job))

    async def checkpoint(self, job: Job | str, checkpoint_id: str) -> bytes:
        return bytes(await self.get(f"/v1/jobs/{job_id(job)}/checkpoints/{checkpoint_id}"))

    async def predict(
        self,
        job: Job | str,
        inputs: list[Any],
        *,
        mc_samples: int | None = None,
        seed: int = 0,
        level: float | None = None,
    ) -> Prediction:
        return await self._run(core.predict(job, inputs, mc_samples, seed, level))

    async def samples(
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
        params = {
            "n": n,
            "seed": seed,
            "label": label,
            "temperature": temperature,
            "gibbs_steps": gibbs_steps,
            "checkpoint": checkpoint,
            "format": format,
        }
        out = await self._run(core.samples(job, params))
        if array and isinstance(out, Samples):
            out = dataclasses.replace(out, samples=_as_array(out.samples))
        return out

    async def log_prob(
        self,
        job: Job | str,
        inputs: list[Any],
        *,
        labels: list[int] | None = None,
        k: int | None = None,
    ) -> LogProb:
        return await self._run(core.log_prob(job, inputs, labels, k))

    async def trajectory(self, job: Job | str, *, array: bool = False) -> Trajectory:
        out = await self._run(core.trajectory(job))
        return _trajectory_arrays(out) if array else out

    async def trajectory_png(self, job: Job | str) -> bytes:
        return await self._run(core.trajectory_png(job))

    async def picture(self, job: Job | str) -> tuple[str, bytes]:
        return await self._run(core.main_picture(job))

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return await self._run(core.raw("GET", path, params, None))

    async def post(self, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        return await self._run(core.raw("POST", path, params, json))


class AsyncDatasets:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def __call__(self) -> list[Dataset]:
        return await self._c._run(core.datasets())

    async def get(self, dataset_id: str) -> Dataset:
        return await self._c._run(core.dataset(dataset_id))

    async def upload(
        self,
        file: str | Path | bytes,
        name: str | None = None,
        *,
        target: str | None = None,
        task: Literal["regression", "classification"] | None = None,
        filename: str | None = None,
    ) -> Dataset:
        return await self._c._run(core.upload(file, name, target, task, filename))

    async def delete(self, dataset_id: str) -> None:
        await self._c._run(core.delete_dataset(dataset_id))


class AsyncKeys:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def __call__(self) -> list[Key]:
        return await self._c._run(core.keys())

    async def create(self, name: str, *, admin: bool = False, owner: str | None = None) -> Key:
        return await self._c._run(core.create_key(name, admin, owner))

    async def revoke(self, key_id: str) -> None:
        await self._c._run(core.revoke_key(key_id))


class AsyncSweeps:
    """As :class:`deepzoo.client.Sweeps`, awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def __call__(self, *, status: str | None = None, limit: int = 20) -> list[Sweep]:
        """Your sweeps, newest first, at most ``limit`` (the pages are followed for you)."""
        return await self._c._run(core.sweeps(status, limit))

    async def create(
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
        body = core._clean(
            {"spec": spec, "grid": grid, "method": method, "trials": trials,
             "parallel": parallel, "metric": metric, "goal": goal, "seed": seed, "name": name}
        )  # fmt: skip
        return await self._c._run(core.create_sweep(body, idempotency_key))

    async def get(self, sweep: Sweep | str) -> Sweep:
        return await self._c._run(core.sweep(sweep))

    async def cancel(self, sweep: Sweep | str) -> Sweep:
        return await self._c._run(core.cancel_sweep(sweep))

    async def plot(self, sweep: Sweep | str) -> bytes:
        return await self._c._run(core.sweep_plot(sweep))

    async def wait(
        self, sweep: Sweep | str, timeout: float | None = None, poll: float = 1.0
    ) -> Sweep:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = await self.get(sweep)
            if current.done:
                return current
            if deadline is not None and time.monotonic() + poll > deadline:
                raise WaitTimeout(f"sweep {current.id} still running after {timeout}s")
            await asyncio.sleep(poll)
