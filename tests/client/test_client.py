"""The Python client (client/deepzoo) against a real stack: submit, follow, wait, infer,
metrics, lifecycle, problems, retries and a stream reconnecting after a real drop."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import deepzoo
from tests.stack import ADMIN_KEY, ROOT, Stack
from tests.support.jobs import PNG_MAGIC
from tests.support.proxy import CuttingProxy

pytestmark = pytest.mark.e2e

MOONS = {"model": "mlp", "dataset": "moons", "params": {"hidden": [8]}, "train": {"epochs": 2}}


def _assert_whole_stream(events: list[deepzoo.Event]) -> None:
    """Ids 1..N once each, queued first, the terminal status last."""
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].kind == "status" and events[0].data["status"] == "queued"
    assert events[-1].terminal and events[-1].data["status"] == "succeeded"


def test_submit_follow_wait_predict_and_metrics(dz: deepzoo.Client) -> None:
    job = dz.submit(MOONS)
    assert isinstance(job, deepzoo.Job) and job.status == "queued" and job.spec["train"]
    events = list(dz.follow(job))
    _assert_whole_stream(events)
    assert {"status", "progress", "metrics"} <= {e.kind for e in events}
    done = dz.wait(job, timeout=60)
    assert done.status == "succeeded" and done.done and done.progress.fraction == 1.0
    assert done.finished_at is not None and done.checkpoint

    pred = dz.predict(job, [[0.0, 0.5], [1.0, -0.5]])
    assert pred.task == "classification" and len(pred.probs) == 2
    assert np.allclose(np.sum(pred.probs, axis=1), 1.0)

    rows = dz.metrics(job)
    assert rows and all(isinstance(r, deepzoo.MetricRow) for r in rows)
    names = {r.name for r in rows}
    arrays = dz.metrics(job, array=True)
    assert set(arrays) == names
    loss = dz.metrics(job, name="train_loss", array=True)
    assert loss.shape == (2, 2) and list(loss[:, 0]) == [1, 2]  # (step, value) per epoch
    assert dz.metrics_csv(job).startswith("name,step,value,time")
    assert [c.step for c in dz.checkpoints(job)]
    assert any(j.id == job.id for j in dz.jobs(model="mlp", limit=200))
    assert all(j.status == "succeeded" for j in dz.jobs(status="succeeded"))


def test_samples_log_prob_and_pictures(
    dz: deepzoo.Client, flow_job: deepzoo.Job, moons_job: deepzoo.Job
) -> None:
    png = dz.samples(flow_job, 64, format="png")
    assert png.startswith(PNG_MAGIC)
    s = dz.samples(flow_job, 5, seed=3, array=True)
    assert s.samples.shape == (5, 2) and s.seed == 3
    assert dz.samples(flow_job, 5, seed=3).samples == s.samples.tolist()  # same seed
    lp = dz.log_prob(flow_job, s.samples.tolist()[:2])
    assert lp.exact and len(lp.log_prob) == 2
    with pytest.raises(deepzoo.ProblemError) as err:  # a flow does not sample by chains
        dz.samples(flow_job, 2, gibbs_steps=3)
    assert err.value.status == 422 and err.value.fields[0] == "gibbs_steps"
    name, data = dz.picture(flow_job)
    assert name == "samples.png" and data.startswith(PNG_MAGIC)
    # a 2-D classifier has no 1-D uncertainty plot (409): its reliability diagram
    name, data = dz.picture(moons_job)
    assert name == "reliability.png" and data.startswith(PNG_MAGIC)
    # the escape hatch: any route, JSON back as values
    cal = dz.get(f"/v1/jobs/{moons_job.id}/calibration")
    assert cal["task"] == "classification"


def test_a_422_is_one_problem_error_naming_the_field(dz: deepzoo.Client) -> None:
    with pytest.raises(deepzoo.ProblemError) as err:
        dz.submit({**MOONS, "params": {"hidden": [0]}})
    e = err.value
    assert e.status == 422 and e.title and e.detail and e.type
    assert "params.hidden[0]" in e.fields and e.errors[0]["message"]
    with pytest.raises(deepzoo.ProblemError) as err:
        dz.job("job_doesnotexist")
    assert err.value.status == 404
    with pytest.raises(deepzoo.ProblemError) as err:  # a classifier cannot sample: 409
        dz.samples(dz.jobs(model="mlp", limit=1)[0], 4)
    assert err.value.status in (404, 409)


def test_cancel_resume_clone_delete(dz: deepzoo.Client) -> None:
    long = dz.submit({**MOONS, "train": {"epochs": 5000}, "name": "long"})
    assert dz.cancel(long).status in ("cancelled", "running")
    assert dz.wait(long, timeout=60).status == "cancelled"
    resumed = dz.resume(long, epochs=6000)
    assert resumed.status in ("queued", "running")
    dz.cancel(long)
    assert dz.wait(long, timeout=60).status == "cancelled"
    copy = dz.clone(long, train={"epochs": 1}, name="short copy")
    assert copy.id != long.id and copy.provenance["cloned_from"] == long.id
    assert copy.spec["train"]["epochs"] == 1 and copy.name == "short copy"
    assert dz.wait(copy, timeout=120).status == "succeeded"
    dz.delete(copy)
    with pytest.raises(deepzoo.ProblemError) as err:
        dz.job(copy)
    assert err.value.status == 404


def test_follow_reconnects_with_last_event_id(
    client_stack: Stack, dz: deepzoo.Client, moons_job: deepzoo.Job
) -> None:
    """The proxy cuts the stream twice mid-way; the client resumes after the last event
    it saw: the same events as an unbroken stream, none lost or repeated."""
    whole = list(dz.follow(moons_job))
    _assert_whole_stream(whole)
    with CuttingProxy(client_stack.port, cut_after=700, cuts=2) as proxy:
        with deepzoo.Client(proxy.url, ADMIN_KEY) as via:
            got = list(via.follow(moons_job))
    assert got == whole
    assert len(proxy.requests) == 3  # two cut, then one to the end
    resumed = [r for r in proxy.requests[1:] if b"last-event-id:" in r.lower()]
    assert len(resumed) == 2
    assert not any(b"last-event-id: 0" in r.lower() for r in resumed)
    # starting after an id gets exactly the rest
    assert list(dz.follow(moons_job, last_event_id=3)) == whole[3:]


def test_real_rate_limit_retry_honours_retry_after(
    client_stack: Stack,
    dz: deepzoo.Client,
    moons_job: deepzoo.Job,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The API's inference limit (1/s, bursts of 10 in this stack) answers 429 with
    Retry-After; a client without retries raises it, one with retries waits and succeeds."""
    admin = next(k for k in dz.keys() if k.prefix == ADMIN_KEY[:8])
    key = dz.keys.create("rate test", owner=admin.owner)  # its own bucket, the admin's jobs
    assert key.key
    inputs = [[0.0, 0.0]]
    with deepzoo.Client(client_stack.url, key.key, retries=0) as strict:
        with pytest.raises(deepzoo.ProblemError) as err:
            for _ in range(40):
                strict.predict(moons_job, inputs)
    assert err.value.status == 429 and err.value.retry_after and err.value.retry_after >= 1
    caplog.set_level(logging.INFO, logger="deepzoo.client")
    with deepzoo.Client(client_stack.url, key.key) as patient:
        t0 = time.monotonic()
        for _ in range(3):
            assert patient.predict(moons_job, inputs).probs
        waited = time.monotonic() - t0
    retries = [r for r in caplog.records if "429" in r.getMessage()]
    assert retries and "Retry-After 1" in retries[0].getMessage()
    assert waited >= 0.9  # at least one Retry-After honoured
    dz.keys.revoke(key.id)


def _scripted(answers: list[Any], seen: list[httpx.Request]) -> httpx.MockTransport:
    """A transport answering from a script: only the 429/503 sequencing is staged here."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler)


def _problem(status: int, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"type": "about:blank", "title": "Busy", "status": status, "detail": "try later"}
    return httpx.Response(status, json=body, headers=headers)


def test_retry_sequencing_backoff_and_idempotency() -> None:
    seen: list[httpx.Request] = []
    # an HTTP date 1 to 2 s away (it has whole seconds)
    date = email.utils.formatdate(time.time() + 2, usegmt=True)
    job = {"id": "job_x", "model": "mlp", "dataset": "moons", "status": "queued"}
    answers: list[Any] = [
        _problem(503, date),
        httpx.ConnectError("refused"),
        _problem(429, "0"),
        httpx.Response(201, json=job),
    ]
    with deepzoo.Client(
        "http://dz.test", "k", backoff=0.01, transport=_scripted(answers, seen)
    ) as c:
        t0 = time.monotonic()
        assert c.submit({"model": "mlp"}).id == "job_x"
        assert time.monotonic() - t0 >= 0.9  # the HTTP date was honoured
    assert len(seen) == 4
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1  # one key: one job

    # bounded: the last 429 is raised, with its Retry-After
    answers = [_problem(429, "0")] * 3
    with deepzoo.Client("http://dz.test", "k", retries=2, transport=_scripted(answers, [])) as c:
        with pytest.raises(deepzoo.ProblemError) as err:
            c.job("job_x")
    assert err.value.status == 429 and err.value.retry_after == 0
    # a connection broken mid-request: a read is resent, a clone (not idempotent) is not
    answers = [httpx.ReadError("reset"), httpx.Response(200, json=job)]
    with deepzoo.Client("http://dz.test", "k", backoff=0.01, transport=_scripted(answers, [])) as c:
        assert c.job("job_x").id == "job_x"
    answers = [httpx.ReadError("reset"), httpx.Response(201, json=job)]
    with deepzoo.Client("http://dz.test", "k", backoff=0.01, transport=_scripted(answers, [])) as c:
        with pytest.raises(deepzoo.TransportError, match="clone"):
            c.clone("job_x")


def test_lists_follow_the_cursor_in_pages_until_the_limit() -> None:
    """The list pages are the server's (the routes' paging is tests/api); here the client's
    side: the page sizes it asks for, the cursor it sends on, and where it stops."""
    seen: list[httpx.Request] = []
    page1 = {"items": [{"id": f"swp_{i}"} for i in range(100)], "next_cursor": "c1"}
    page2 = {"items": [{"id": f"swp_{i}"} for i in range(100, 120)], "next_cursor": None}
    answers: list[Any] = [httpx.Response(200, json=page1), httpx.Response(200, json=page2)]
    with deepzoo.Client("http://dz.test", "k", transport=_scripted(answers, seen)) as c:
        got = c.sweeps(status="finished", limit=150)
    assert [s.id for s in got] == [f"swp_{i}" for i in range(120)]
    params = [dict(r.url.params) for r in seen]
    assert params == [
        {"status": "finished", "limit": "100"},
        {"status": "finished", "limit": "50", "cursor": "c1"},
    ]
    # the limit ends it even when the server has more
    answers = [httpx.Response(200, json={"items": [{"id": "job_1"}], "next_cursor": "c2"})]
    with deepzoo.Client("http://dz.test", "k", transport=_scripted(answers, [])) as c:
        assert [j.id for j in c.jobs(limit=1)] == ["job_1"]


def test_async_client_has_the_same_methods(client_stack: Stack, moons_job: deepzoo.Job) -> None:
    sync_methods = {m for m in dir(deepzoo.Client) if not m.startswith("_")}
    assert sync_methods <= {m for m in dir(deepzoo.AsyncClient) if not m.startswith("_")}

    async def run() -> tuple[list[deepzoo.Event], deepzoo.Job, list[str]]:
        async with deepzoo.AsyncClient(client_stack.url, ADMIN_KEY) as c:
            events = [e async for e in c.follow(moons_job)]
            job = await c.wait(moons_job.id, timeout=10)
            names = [m.name for m in await c.models()]
            with pytest.raises(deepzoo.ProblemError) as err:
                await c.submit({"model": "mlp", "dataset": "nope"})
            assert err.value.status == 422 and "dataset" in err.value.fields
            return events, job, names

    events, job, names = asyncio.run(run())
    _assert_whole_stream(events)
    assert job.status == "succeeded" and "mlp" in names


def test_datasets_and_upload(dz: deepzoo.Client) -> None:
    assert any(d.id == "moons" and d.kind == "builtin" for d in dz.datasets())
    ds = dz.datasets.upload(ROOT / "docs/examples/data.csv", "houses", target="price")
    assert ds.kind == "table" and ds.task == "regression" and ds.shape == [500, 3]
    assert dz.datasets.get(ds.id).name == "houses"
    with pytest.raises(deepzoo.ProblemError) as err:
        dz.datasets.upload(b"a,b\n1,2\n", "tiny", target="b")
    assert err.value.status == 422 and "file" in err.value.fields
    dz.datasets.delete(ds.id)


def test_url_and_key_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DEEPZOO_URL", "DEEPZOO_API_KEY", "DEEPZOO_HOST", "DEEPZOO_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DEEPZOO_DATA_DIR", str(tmp_path))
    (tmp_path / "admin.key").write_text("dz_from_file\n")
    c = deepzoo.Client()
    assert c.url == "http://127.0.0.1:8000" and c.key == "dz_from_file"
    monkeypatch.setenv("DEEPZOO_API_KEY", "dz_from_env")
    monkeypatch.setenv("DEEPZOO_URL", "http://api.example:9000/")
    c = deepzoo.Client()
    assert c.url == "http://api.example:9000" and c.key == "dz_from_env"
    c = deepzoo.Client("http://other:1", "dz_arg")
    assert (c.url, c.key) == ("http://other:1", "dz_arg")
    assert c.http.headers["Authorization"] == "Bearer dz_arg"
    assert deepzoo.Client("localhost:8000/").url == "http://localhost:8000"
    monkeypatch.delenv("DEEPZOO_URL")
    monkeypatch.setenv("DEEPZOO_HOST", "0.0.0.0")
    monkeypatch.setenv("DEEPZOO_PORT", "8123")
    assert deepzoo.Client().url == "http://127.0.0.1:8123"


def test_an_unreachable_api_is_a_transport_error() -> None:
    with deepzoo.Client("http://127.0.0.1:9", "k", retries=1, backoff=0.01) as c:
        with pytest.raises(deepzoo.TransportError, match=r"127\.0\.0\.1:9"):
            c.models()


def test_the_python_examples_in_docs_client_md_run(
    client_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ```python block of docs/client.md, in order, in one namespace, against the
    stack (the page's Client() finds it through DEEPZOO_URL and DEEPZOO_API_KEY)."""
    text = (ROOT / "docs" / "client.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert len(blocks) >= 5
    monkeypatch.setenv("DEEPZOO_URL", client_stack.url)
    monkeypatch.setenv("DEEPZOO_API_KEY", ADMIN_KEY)
    monkeypatch.chdir(ROOT)
    namespace: dict[str, Any] = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/client.md python block {i + 1}", "exec"), namespace)
    namespace["dz"].close()


def test_sweeps_create_cancel_and_refuse_sync_and_async(
    dz: deepzoo.Client, client_stack: Stack
) -> None:
    long = {
        "model": "mlp",
        "dataset": "moons",
        "params": {"hidden": [8]},
        "train": {"epochs": 2000},
    }
    sweep = dz.sweeps.create(long, {"train.seed": [0, 1, 2]}, parallel=1, name="to cancel")
    assert isinstance(sweep, deepzoo.Sweep) and sweep.status == "running"
    assert [c.number for c in sweep.children] == [0] and sweep.children[0].job_id
    assert sweep.id in {s.id for s in dz.sweeps(status="running")}
    with pytest.raises(deepzoo.ProblemError) as err:
        dz.sweeps.create(long, {"optimizer.lr": [0.1, -1.0]})
    assert err.value.status == 422 and err.value.fields == ["grid.optimizer.lr"]

    async def run() -> deepzoo.Sweep:
        async with deepzoo.AsyncClient(client_stack.url, ADMIN_KEY) as c:
            got = await c.sweeps.get(sweep.id)
            assert got.id == sweep.id and got.trials == 3
            await c.sweeps.cancel(sweep)
            return await c.sweeps.wait(sweep.id, timeout=30, poll=0.2)

    cancelled = asyncio.run(run())
    assert cancelled.status == "cancelled" and cancelled.done
    assert dz.wait(sweep.children[0].job_id or "", timeout=60).status == "cancelled"


def test_trajectory_json_arrays_and_png_sync_and_async(
    dz: deepzoo.Client, client_stack: Stack, optim_job: deepzoo.Job, moons_job: deepzoo.Job
) -> None:
    """The optimizer lab's path as a typed Trajectory (lists, or numpy with array=True) and
    its contour PNG, the same from the async client; a job of another family is a 409."""
    t = dz.trajectory(optim_job)
    assert isinstance(t, deepzoo.Trajectory) and t.raw["job_id"] == optim_job.id
    assert (t.job_id, t.landscape, t.dim, t.minimum) == (optim_job.id, "rosenbrock", 2, 0.0)
    assert t.optimizer["name"] == "adam" and t.optimizer["lr"] == 0.05
    assert t.steps == list(range(21)) and not t.subsampled
    assert t.path[0] == [-1.5, 2.0] and t.loss[0] == pytest.approx(12.5)
    assert len(t.path) == len(t.loss) == len(t.grad_norm) == len(t.step_norm) == 21
    assert t.grad_norm[0] is None and t.step_norm[0] is None
    assert t.loss[-1] < t.loss[0]
    assert optim_job.metrics["loss"] == t.loss[-1]  # the job's last logged loss

    a = dz.trajectory(optim_job, array=True)
    assert a.path.shape == (21, 2) and a.loss.shape == a.grad_norm.shape == (21,)
    assert list(a.steps) == t.steps and np.allclose(a.path, t.path)
    assert np.isnan(a.grad_norm[0]) and np.allclose(a.grad_norm[1:], t.grad_norm[1:])
    png = dz.trajectory_png(optim_job)
    assert png.startswith(PNG_MAGIC)
    with pytest.raises(deepzoo.ProblemError) as err:
        dz.trajectory(moons_job)
    assert err.value.status == 409 and "trajectory" in err.value.detail

    async def run() -> tuple[deepzoo.Trajectory, bytes]:
        async with deepzoo.AsyncClient(client_stack.url, ADMIN_KEY) as c:
            got = await c.trajectory(optim_job.id, array=True)
            return got, await c.trajectory_png(optim_job)

    got, async_png = asyncio.run(run())
    assert np.allclose(got.path, a.path) and np.allclose(got.loss, a.loss)
    assert async_png.startswith(PNG_MAGIC)


def test_sweeps_create_with_an_idempotency_key_sync_and_async(
    dz: deepzoo.Client, client_stack: Stack
) -> None:
    """The key given: the same sweep again, sync or async, no child made twice; another
    body with it: a 409 naming Idempotency-Key. A retry after a broken connection carries
    the same fresh key (the creation is safe to resend)."""
    spec = {
        "model": "mlp",
        "dataset": "moons",
        "params": {"hidden": [8]},
        "train": {"epochs": 2000},
    }
    grid = {"train.seed": [0, 1]}
    first = dz.sweeps.create(spec, grid, parallel=1, idempotency_key="client-sweep-1")
    again = dz.sweeps.create(spec, grid, parallel=1, idempotency_key="client-sweep-1")
    assert again.id == first.id and again.children == first.children
    assert again.raw["created_at"] == first.raw["created_at"]
    with pytest.raises(deepzoo.ProblemError) as err:
        dz.sweeps.create(spec, grid, parallel=2, idempotency_key="client-sweep-1")
    assert err.value.status == 409 and err.value.fields == ["Idempotency-Key"]

    async def run() -> deepzoo.Sweep:
        async with deepzoo.AsyncClient(client_stack.url, ADMIN_KEY) as c:
            got = await c.sweeps.create(spec, grid, parallel=1, idempotency_key="client-sweep-1")
            await c.sweeps.cancel(got)
            return got

    assert asyncio.run(run()).id == first.id
    assert len([s for s in dz.sweeps(limit=100) if s.id == first.id]) == 1
    assert len(dz.sweeps.get(first).children) == 1

    # no key given: a fresh one per call, the same one on every retry of that call
    seen: list[httpx.Request] = []
    body = {**first.raw, "children": [], "best": None}
    answers: list[Any] = [httpx.ReadError("reset"), httpx.Response(201, json=body)]
    with deepzoo.Client(
        "http://dz.test", "k", backoff=0.01, transport=_scripted(answers, seen)
    ) as c:
        assert c.sweeps.create(spec, grid).id == first.id
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(seen) == 2 and len(keys) == 1 and keys.pop().startswith("deepzoo-")
