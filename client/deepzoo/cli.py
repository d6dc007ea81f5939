"""``deepzoo``: DeepZoo from the command line (typer + rich).

Exit codes: 0 success; 1 a job that ended failed or cancelled (``submit --follow``,
``wait``); 2 usage and client errors (a problem from the API, an unreachable API, a
bad argument). Errors print the problem's detail and the fields it names, never a
traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from deepzoo.client import Client
from deepzoo.errors import DeepZooError, ProblemError
from deepzoo.types import Event, Job, Sweep

HELP = """DeepZoo from the command line: train any model of the zoo, follow it, query it.

The API's URL and key come from --url/--key, else DEEPZOO_URL and DEEPZOO_API_KEY, else
what `make run` serves and writes (http://127.0.0.1:8000, ./var/admin.key).

Exit codes: 0 success, 1 a job that ended failed or cancelled, 2 a usage or client
error (the API's problem is printed with the fields it names).
"""

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
keys_app = typer.Typer(
    help="API keys (admin key only): list, create, revoke.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
sweep_app = typer.Typer(
    help="Hyperparameter sweeps: create, list, show (the children best first), wait, cancel, plot.",
    no_args_is_help=True,
)
app.add_typer(sweep_app, name="sweep")

# piped output is not cut at 80 columns (tables of job ids and metrics are wide)
# a job's id (job_ and 16 hex digits), as every command taking one names it
JobId = Annotated[str, typer.Argument(help="job id (job_…)", metavar="ID")]
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


class State:
    def __init__(self, url: str | None, key: str | None, as_json: bool) -> None:
        self.url, self.key, self.json = url, key, as_json
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            # fewer retries than the library's 5: a person waits for the answer
            self._client = Client(self.url, self.key, retries=3)
        return self._client


def _state(ctx: typer.Context) -> State:
    state = ctx.find_object(State)
    assert state is not None, "the app's callback sets it"
    return state


@app.callback()
def _main(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="API base URL [env DEEPZOO_URL; http://127.0.0.1:8000]")
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="API key [env DEEPZOO_API_KEY; ./var/admin.key]")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="machine output: JSON (one object per line)")
    ] = False,
) -> None:
    ctx.obj = State(url, key, as_json)


def _emit(value: Any) -> None:
    out.print_json(json.dumps(value, default=str)) if sys.stdout.isatty() else print(
        json.dumps(value, default=str)
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _job_row(j: Job) -> list[str]:
    p = j.progress
    progress = f"{100 * p.fraction:.0f}% ({p.step}/{p.total})" if p.total else "-"
    return [j.id, j.model, j.dataset, j.status, progress, j.name or "", _fmt(j.created_at)[:19]]


def _jobs_table(jobs: list[Job]) -> Table:
    table = Table("id", "model", "dataset", "status", "progress", "name", "created")
    for j in jobs:
        table.add_row(*_job_row(j))
    return table


# ---- catalog ---------------------------------------------------------------------------


@app.command()
def models(ctx: typer.Context) -> None:
    """The catalog: every model family, what it can do and the datasets it trains on."""
    st = _state(ctx)
    items = st.client.models()
    if st.json:
        return _emit([m.__dict__ for m in items])
    table = Table("model", "capabilities", "datasets", "description")
    for m in items:
        table.add_row(m.name, ", ".join(m.capabilities), ", ".join(m.datasets), m.description)
    out.print(table)


@app.command()
def datasets(
    ctx: typer.Context,
    upload: Annotated[
        Path | None, typer.Option(help="upload this CSV or .npz first", exists=True)
    ] = None,
    name: Annotated[str | None, typer.Option(help="the upload's name (default: file stem)")] = None,
    target: Annotated[str | None, typer.Option(help="CSV: the column to predict")] = None,
) -> None:
    """The built-in datasets and your uploads; --upload FILE adds one."""
    st = _state(ctx)
    if upload is not None:
        ds = st.client.datasets.upload(upload, name, target=target)
        if st.json:
            return _emit(ds.raw)
        out.print(f"uploaded {ds.id} ({ds.kind}, {ds.task}, shape {ds.shape})")
        return None
    items = st.client.datasets()
    if st.json:
        return _emit([d.raw for d in items])
    table = Table("id", "name", "kind", "description")
    for d in items:
        table.add_row(d.id, d.name, d.kind, d.description)
    out.print(table)


# ---- jobs ------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_overrides(spec: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``train.epochs=50`` sets spec["train"]["epochs"] = 50 (JSON when it parses)."""
    for item in overrides:
        path, eq, text = item.partition("=")
        if not eq or not path or any(not part for part in path.split(".")):
            raise typer.BadParameter(f"{item!r}: expected a dotted path=value", param_hint="--set")
        *parents, leaf = path.split(".")
        node = spec
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise typer.BadParameter(f"{path}: {part} is not an object", param_hint="--set")
            node = child
        node[leaf] = _parse_value(text)
    return spec


def _read_spec(source: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise typer.BadParameter(f"{source}: {exc.strerror}", param_hint="SPEC") from exc
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{source}: not JSON ({exc})", param_hint="SPEC") from exc
    if not isinstance(spec, dict):
        raise typer.BadParameter(f"{source}: a job spec is a JSON object", param_hint="SPEC")
    return spec


def _metrics_text(metrics: dict[str, Any], limit: int = 4) -> str:
    return "  ".join(f"{k}={_fmt(v)}" for k, v in list(metrics.items())[:limit])


def follow_job(st: State, job: Job) -> Job:
    """Follow the job's events to its end: JSON lines with --json, else a live progress
    bar with the server's ETA and the latest metrics. The job as it ended."""
    if st.json:
        for ev in st.client.follow(job):
            print(json.dumps({"id": ev.id, "event": ev.kind, "data": ev.data}), flush=True)
        return st.client.job(job)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("eta {task.fields[eta]}"),
        TextColumn("{task.fields[metrics]}"),
        console=err,
        transient=False,
    )
    latest: dict[str, Any] = {}
    with bar:
        task = bar.add_task(f"{job.id} {job.status}", total=None, eta="-", metrics="")
        for ev in st.client.follow(job):
            if ev.kind == "progress":
                eta = ev.data.get("eta_seconds")
                bar.update(
                    task,
                    total=ev.data.get("total") or None,
                    completed=ev.data.get("step", 0),
                    eta="-" if eta is None else f"{eta:.0f}s",
                )
            elif ev.kind == "metrics":
                latest.update({m["name"]: m.get("value") for m in ev.data.get("metrics", [])})
                bar.update(task, metrics=_metrics_text(latest))
            elif ev.kind == "status":
                bar.update(task, description=f"{job.id} {ev.data.get('status')}")
    final = st.client.job(job)
    colour = "green" if final.status == "succeeded" else "red"
    err.print(
        f"[{colour}]{final.id} {final.status}[/]" + (f": {final.error}" if final.error else "")
    )
    if final.metrics:
        err.print(_metrics_text(final.metrics, limit=12))
    return final


def _finish(st: State, job: Job) -> None:
    if st.json:
        _emit(job.raw)
    else:
        out.print(job.id)
    if job.done and job.status != "succeeded":
        raise typer.Exit(1)


@app.command()
def submit(
    ctx: typer.Context,
    spec: Annotated[
        str, typer.Argument(help="a JobSpec JSON file, or - for standard input", metavar="SPEC")
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="override a field by its dotted path, e.g. train.epochs=50 or "
            "params.hidden=[64,64]; the value is JSON when it parses, else a string "
            "(repeatable)",
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="follow it to the end with a progress bar")
    ] = False,
) -> None:
    """Submit a training job; prints its id (the Job with --json).

    With --follow, waits with a live progress bar (ETA, latest metrics) and exits 1 if
    the job fails or is cancelled.
    """
    st = _state(ctx)
    body = apply_overrides(_read_spec(spec), set_ or [])
    job = st.client.submit(body)
    if follow:
        if not st.json:
            err.print(f"submitted {job.id}")
        job = follow_job(st, job)
    _finish(st, job)


@app.command()
def jobs(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(help="queued, running, succeeded, failed or cancelled"),
    ] = None,
    model: Annotated[str | None, typer.Option(help="only this model family")] = None,
    dataset: Annotated[str | None, typer.Option(help="only this dataset")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many")] = 20,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="refresh every 2 s until Ctrl-C")
    ] = False,
) -> None:
    """Your jobs, newest first, as a table."""
    st = _state(ctx)

    def fetch() -> list[Job]:
        return st.client.jobs(status=status, model=model, dataset=dataset, limit=limit)

    if st.json:
        return _emit([j.raw for j in fetch()])
    if not watch:
        out.print(_jobs_table(fetch()))
        return None
    try:
        with Live(_jobs_table(fetch()), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(2)
                live.update(_jobs_table(fetch()), refresh=True)
    except KeyboardInterrupt:
        return None


@app.command()
def show(ctx: typer.Context, job_id: JobId) -> None:
    """One job: status, progress, spec, latest metrics, error, provenance."""
    st = _state(ctx)
    job = st.client.job(job_id)
    if st.json:
        return _emit(job.raw)
    table = Table(show_header=False, box=None)
    p = job.progress
    for k, v in [
        ("id", job.id),
        ("name", job.name),
        ("model", job.model),
        ("dataset", job.dataset),
        ("status", job.status),
        ("progress", f"{p.step}/{p.total} ({100 * p.fraction:.0f}%)"),
        ("eta", None if p.eta_seconds is None else f"{p.eta_seconds:.0f}s"),
        ("attempts", job.attempts),
        ("error", job.error),
        ("created", job.created_at),
        ("started", job.started_at),
        ("finished", job.finished_at),
        ("checkpoint", job.checkpoint),
        ("tags", json.dumps(job.tags) if job.tags else None),
    ]:
        table.add_row(k, _fmt(v))
    out.print(table)
    if job.metrics:
        out.print("metrics: " + _metrics_text(job.metrics, limit=100))
    out.print("spec: " + json.dumps(job.spec))


@app.command()
def wait(
    ctx: typer.Context,
    job_id: JobId,
    timeout: Annotated[float | None, typer.Option(help="give up after this many seconds")] = None,
) -> None:
    """Wait for a job to finish; exit 1 if it failed or was cancelled."""
    st = _state(ctx)
    _finish(st, st.client.wait(job_id, timeout=timeout))


def _print_event(st: State, ev: Event) -> None:
    if st.json:
        print(json.dumps({"id": ev.id, "event": ev.kind, "data": ev.data}), flush=True)
    else:
        out.print(f"{ev.id:>5} {ev.kind:<8} {json.dumps(ev.data)}", highlight=False, soft_wrap=True)


@app.command()
def events(
    ctx: typer.Context,
    job_id: JobId,
    after: Annotated[int, typer.Option(help="start after this event id (Last-Event-ID)")] = 0,
) -> None:
    """The job's events (status, progress, metrics) from the start, until it ends."""
    st = _state(ctx)
    for ev in st.client.follow(job_id, last_event_id=after):
        _print_event(st, ev)


@app.command("logs", help="Alias of events: the job's event stream until it ends.")
def logs(
    ctx: typer.Context,
    job_id: JobId,
    after: Annotated[int, typer.Option(help="start after this event id (Last-Event-ID)")] = 0,
) -> None:
    events(ctx, job_id, after)


@app.command()
def metrics(
    ctx: typer.Context,
    job_id: JobId,
    format: Annotated[
        str, typer.Option("--format", click_type=click.Choice(["table", "csv", "json"]))
    ] = "table",
    name: Annotated[str | None, typer.Option(help="only this metric")] = None,
) -> None:
    """A job's logged metrics: a table (a row per metric: points, last step and value,
    min, max; with --name that metric's curve, a row per step), the API's CSV
    (name,step,value,time, every value) or JSON."""
    st = _state(ctx)
    if format == "csv":
        sys.stdout.write(st.client.metrics_csv(job_id, name=name))
        return
    rows = st.client.metrics(job_id, name=name)
    if format == "json" or st.json:
        return _emit(
            [{"name": r.name, "step": r.step, "value": r.value, "time": r.time} for r in rows]
        )
    if name is not None:  # one metric: its curve, a row a step
        table = Table("step", name)
        for r in rows:
            table.add_row(str(r.step), _fmt(r.value))
        out.print(table)
        return
    by_name: dict[str, list[float | None]] = {}
    steps: dict[str, int] = {}
    for r in rows:
        by_name.setdefault(r.name, []).append(r.value)
        steps[r.name] = r.step
    table = Table("metric", "points", "last step", "last", "min", "max")
    for n, values in by_name.items():
        finite = [v for v in values if v is not None]
        table.add_row(
            n,
            str(len(values)),
            str(steps[n]),
            _fmt(values[-1]),
            _fmt(min(finite) if finite else None),
            _fmt(max(finite) if finite else None),
        )
    out.print(table)


@app.command()
def cancel(ctx: typer.Context, job_id: JobId) -> None:
    """Cancel a queued or running job (a running one keeps its checkpoint)."""
    st = _state(ctx)
    job = st.client.cancel(job_id)
    _emit(job.raw) if st.json else out.print(f"{job.id} {job.status}")


@app.command()
def resume(
    ctx: typer.Context,
    job_id: JobId,
    epochs: Annotated[int | None, typer.Option(help="a new epoch budget")] = None,
    steps: Annotated[int | None, typer.Option(help="a new step budget (RL)")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="follow it to the end")] = False,
) -> None:
    """Continue a failed or cancelled job from its last checkpoint."""
    st = _state(ctx)
    job = st.client.resume(job_id, epochs=epochs, steps=steps)
    if follow:
        job = follow_job(st, job)
    _finish(st, job)


@app.command()
def clone(
    ctx: typer.Context,
    job_id: JobId,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="override: train.epochs=10, params.dropout=0.2, dataset=moons, name=x",
        ),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="follow it to the end")] = False,
) -> None:
    """A new job from the same spec and provenance, with optional overrides."""
    st = _state(ctx)
    job = st.client.clone(job_id, **apply_overrides({}, set_ or []))
    if follow:
        job = follow_job(st, job)
    _finish(st, job)


@app.command()
def delete(ctx: typer.Context, job_id: JobId) -> None:
    """Delete a finished job with its metrics, events and checkpoints."""
    _state(ctx).client.delete(job_id)


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)
    except OSError as exc:
        raise typer.BadParameter(f"{text[1:]}: {exc.strerror}", param_hint=what) from exc
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint=what) from exc


@app.command()
def predict(
    ctx: typer.Context,
    job_id: JobId,
    inputs: Annotated[
        str,
        typer.Option(help='a JSON list of inputs, e.g. "[[0.0], [2.8]]", or @file.json'),
    ],
    mc_samples: Annotated[int | None, typer.Option(help="stochastic passes T")] = None,
    seed: Annotated[int, typer.Option(help="seeds the passes")] = 0,
) -> None:
    """Predictions with uncertainty (JSON: mean and variances, or probabilities)."""
    st = _state(ctx)
    pred = st.client.predict(
        job_id, _json_arg(inputs, "--inputs"), mc_samples=mc_samples, seed=seed
    )
    _emit(pred.raw)


@app.command("log-prob")
def log_prob(
    ctx: typer.Context,
    job_id: JobId,
    inputs: Annotated[str, typer.Option(help="a JSON list of inputs, or @file.json")],
    k: Annotated[int | None, typer.Option(help="importance samples (a bound)")] = None,
) -> None:
    """log p of each input, in nats and bits per dimension (JSON)."""
    st = _state(ctx)
    lp = st.client.log_prob(job_id, _json_arg(inputs, "--inputs"), k=k)
    _emit(lp.__dict__)


@app.command()
def samples(
    ctx: typer.Context,
    job_id: JobId,
    n: Annotated[int, typer.Option("-n", help="how many samples")] = 16,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="write the PNG grid here")
    ] = None,
    seed: Annotated[int, typer.Option(help="same seed, same samples")] = 0,
    label: Annotated[int | None, typer.Option(help="class (conditional models)")] = None,
    temperature: Annotated[float | None, typer.Option(help="scales the latent noise")] = None,
    gibbs_steps: Annotated[
        int | None, typer.Option(help="sweeps of each chain (models that sample by chains)")
    ] = None,
) -> None:
    """Samples from a generative job: JSON rows, or with -o a PNG (image grid or scatter)."""
    st = _state(ctx)
    if output is None:
        s = st.client.samples(
            job_id, n, seed=seed, label=label, temperature=temperature, gibbs_steps=gibbs_steps
        )
        return _emit(s.__dict__)
    png = st.client.samples(
        job_id,
        n,
        seed=seed,
        label=label,
        temperature=temperature,
        gibbs_steps=gibbs_steps,
        format="png",
    )
    output.write_bytes(png)
    err.print(f"wrote {output} ({len(png)} bytes)")


@app.command()
def plot(
    ctx: typer.Context,
    job_id: JobId,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="file to write (default: ID-NAME.png)")
    ] = None,
) -> None:
    """The job's main picture, chosen from its model's capabilities: an RL episode
    (GIF), samples, the uncertainty plot (1-D regression) or a reliability diagram."""
    st = _state(ctx)
    name, data = st.client.picture(job_id)
    path = output or Path(f"{job_id}-{name}")
    path.write_bytes(data)
    err.print(f"wrote {path} ({name}, {len(data)} bytes)")


@app.command()
def trajectory(
    ctx: typer.Context,
    job_id: JobId,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="write the path on the landscape's contours (PNG)"),
    ] = None,
) -> None:
    """The optimizer lab's path (optim jobs): a row per point from the start (step 0),
    w0, w1, the loss, the gradient's norm and the step's length (the API's JSON with
    --json), or with -o the path drawn on the landscape's contours (PNG)."""
    st = _state(ctx)
    if output is not None:
        png = st.client.trajectory_png(job_id)
        output.write_bytes(png)
        err.print(f"wrote {output} ({len(png)} bytes)")
        return None
    t = st.client.trajectory(job_id)
    if st.json:
        return _emit(t.raw)
    done = "not converged" if t.converged_step is None else f"converged at step {t.converged_step}"
    out.print(
        f"{t.job_id}: {t.optimizer.get('name')} lr {_fmt(t.optimizer.get('lr'))} on "
        f"{t.landscape} (dim {t.dim}), {len(t.steps)} points"
        f"{' (subsampled)' if t.subsampled else ''}, f* {_fmt(t.minimum)}, {done}",
        highlight=False,
    )
    table = Table("step", "w0", "w1", "loss", "grad_norm", "step_norm")
    rows = zip(t.steps, t.path, t.loss, t.grad_norm, t.step_norm, strict=True)
    for step, (w0, w1), loss, grad, length in rows:
        table.add_row(str(step), _fmt(w0), _fmt(w1), _fmt(loss), _fmt(grad), _fmt(length))
    out.print(table)
    return None


@app.command()
def compare(
    ctx: typer.Context,
    job_ids: Annotated[list[str], typer.Argument(help="two or more job ids", metavar="ID...")],
) -> None:
    """Jobs side by side: model, dataset, status and the final value of every metric."""
    st = _state(ctx)
    found = [st.client.job(j) for j in job_ids]
    if st.json:
        return _emit({j.id: {"status": j.status, "metrics": j.metrics} for j in found})
    table = Table("", *(j.id for j in found))
    for label, get in [
        ("name", lambda j: j.name),
        ("model", lambda j: j.model),
        ("dataset", lambda j: j.dataset),
        ("status", lambda j: j.status),
        ("steps", lambda j: j.progress.step),
    ]:
        table.add_row(label, *(_fmt(get(j)) for j in found))
    names = sorted({m for j in found for m in j.metrics})
    for m in names:
        table.add_row(m, *(_fmt(j.metrics.get(m)) for j in found))
    out.print(table)


# ---- sweeps ----------------------------------------------------------------------------

SweepId = Annotated[str, typer.Argument(help="sweep id (swp_…)", metavar="ID")]


def parse_grid(items: list[str]) -> dict[str, Any]:
    """``optimizer.lr=[0.01,0.1]`` or ``optimizer.lr={"low":1e-4,"high":0.1,"log":true}``."""
    grid: dict[str, Any] = {}
    for item in items:
        path, eq, text = item.partition("=")
        value = _parse_value(text)
        if not eq or not path or not isinstance(value, list | dict):
            raise typer.BadParameter(
                f'{item!r}: expected path=[values...] or path={{"low": …, "high": …}}',
                param_hint="--vary",
            )
        grid[path] = value
    return grid


def _sweep_table(sw: Sweep) -> Table:
    keys = list(sw.grid)
    table = Table("#", *keys, "status", sw.metric, "job")
    for c in sw.children:
        values = [_fmt(c.values.get(k)) for k in keys]
        table.add_row(str(c.number), *values, c.status, _fmt(c.metric), c.job_id or c.error or "")
    return table


def _show_sweep(st: State, sw: Sweep) -> None:
    if st.json:
        return _emit(sw.raw)
    counts = "  ".join(f"{k}={v}" for k, v in sw.counts.items())
    out.print(f"{sw.id} {sw.name or ''} {sw.status}: {sw.method}, {sw.metric} ({sw.goal}), "
              f"{len(sw.children)}/{sw.trials} children  {counts}")  # fmt: skip
    out.print(_sweep_table(sw))


@sweep_app.command("create")
def sweep_create(
    ctx: typer.Context,
    spec: Annotated[
        str, typer.Argument(help="the base JobSpec JSON file, or - for stdin", metavar="SPEC")
    ],
    vary: Annotated[
        list[str],
        typer.Option(
            "--vary",
            "-v",
            help="a field to vary by its dotted path: optimizer.lr=[0.01,0.1] (values), or "
            'for random and tpe optimizer.lr={"low":1e-4,"high":0.1,"log":true} (repeatable)',
        ),
    ],
    method: Annotated[str, typer.Option(help="grid, random or tpe")] = "grid",
    trials: Annotated[int | None, typer.Option(help="children in all (≤ 64)")] = None,
    parallel: Annotated[int, typer.Option(help="children queued or running at once")] = 4,
    metric: Annotated[str, typer.Option(help="the final metric that ranks them")] = "val_loss",
    goal: Annotated[str, typer.Option(help="min or max")] = "min",
    seed: Annotated[int, typer.Option(help="seeds random and tpe")] = 0,
    name: Annotated[str | None, typer.Option(help="a label for the sweep")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="override a field of SPEC (as submit --set)"),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="wait for it, then show it")] = False,
) -> None:
    """Create a sweep of child jobs of SPEC; prints its id (the table with --wait)."""
    st = _state(ctx)
    base = apply_overrides(_read_spec(spec), set_ or [])
    sw = st.client.sweeps.create(
        base, parse_grid(vary), method=method, trials=trials, parallel=parallel,  # type: ignore[arg-type]
        metric=metric, goal=goal, seed=seed, name=name,  # type: ignore[arg-type]
    )  # fmt: skip
    if wait:
        if not st.json:
            err.print(f"created {sw.id}")
        return _show_sweep(st, st.client.sweeps.wait(sw))
    _emit(sw.raw) if st.json else out.print(sw.id)


@sweep_app.command("list")
def sweep_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="running, finished or cancelled")] = None,
    limit: Annotated[int, typer.Option(help="at most this many (the pages are followed)")] = 20,
) -> None:
    """Your sweeps, newest first."""
    st = _state(ctx)
    items = st.client.sweeps(status=status, limit=limit)
    if st.json:
        return _emit([s.raw for s in items])
    table = Table("id", "name", "status", "method", "metric", "children", "best")
    for s in items:
        best = _fmt(s.best.metric) if s.best else "-"
        table.add_row(s.id, s.name or "", s.status, s.method, f"{s.metric} ({s.goal})",
                      f"{len(s.children)}/{s.trials}", best)  # fmt: skip
    out.print(table)


@sweep_app.command("show")
def sweep_show(ctx: typer.Context, sweep_id: SweepId) -> None:
    """The sweep and its children, best first."""
    st = _state(ctx)
    _show_sweep(st, st.client.sweeps.get(sweep_id))


@sweep_app.command("wait")
def sweep_wait(
    ctx: typer.Context,
    sweep_id: SweepId,
    timeout: Annotated[float | None, typer.Option(help="give up after this many seconds")] = None,
) -> None:
    """Wait until the sweep is over, then show it."""
    st = _state(ctx)
    _show_sweep(st, st.client.sweeps.wait(sweep_id, timeout=timeout))


@sweep_app.command("cancel")
def sweep_cancel(ctx: typer.Context, sweep_id: SweepId) -> None:
    """Stop making children and cancel the queued and running ones."""
    st = _state(ctx)
    _show_sweep(st, st.client.sweeps.cancel(sweep_id))


@sweep_app.command("plot")
def sweep_plot(
    ctx: typer.Context,
    sweep_id: SweepId,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="file to write (default: ID.png)")
    ] = None,
) -> None:
    """The children's metric curves overlaid (PNG)."""
    data = _state(ctx).client.sweeps.plot(sweep_id)
    path = output or Path(f"{sweep_id}.png")
    path.write_bytes(data)
    err.print(f"wrote {path} ({len(data)} bytes)")


# ---- keys ------------------------------------------------------------------------------


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """Every key, without secrets."""
    st = _state(ctx)
    items = st.client.keys()
    if st.json:
        return _emit([k.__dict__ for k in items])
    table = Table("id", "name", "owner", "prefix", "admin", "created", "revoked")
    for k in items:
        table.add_row(
            k.id, k.name, k.owner, k.prefix, _fmt(k.is_admin), _fmt(k.created_at)[:19],
            _fmt(k.revoked_at)[:19],
        )  # fmt: skip
    out.print(table)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="a label for the key", metavar="NAME")],
    admin: Annotated[bool, typer.Option(help="an admin key")] = False,
    owner: Annotated[str | None, typer.Option(help="share this owner's jobs and data")] = None,
) -> None:
    """Create a key; prints the secret, shown only this once."""
    st = _state(ctx)
    k = st.client.keys.create(name, admin=admin, owner=owner)
    _emit(k.__dict__) if st.json else out.print(k.key)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="key id (key_…)", metavar="KEY_ID")],
) -> None:
    """Revoke a key at once."""
    _state(ctx).client.keys.revoke(key_id)


# ---- entry point -----------------------------------------------------------------------


def report(exc: DeepZooError) -> None:
    """A client error on stderr: the problem's status, detail and the fields it names."""
    if isinstance(exc, ProblemError):
        err.print(f"error: {exc.status} {exc.title}: {exc.detail}", markup=False, highlight=False)
        for e in exc.errors:
            err.print(f"  field {e.get('path')}: {e.get('message')}", markup=False, highlight=False)
        if exc.status == 401:
            err.print(
                "  give a key: --key, DEEPZOO_API_KEY, or run where `make run` wrote "
                "var/admin.key (DEEPZOO_DATA_DIR)",
                markup=False,
                highlight=False,
            )
    else:
        err.print(f"error: {exc}", markup=False, highlight=False)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except DeepZooError as exc:
        report(exc)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except OSError as exc:  # a file to read or write (-o, @inputs, --upload)
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except Exception as exc:  # never a traceback, unless asked for
        if os.environ.get("DEEPZOO_DEBUG"):
            raise
        err.print(
            f"error: {type(exc).__name__}: {exc} (DEEPZOO_DEBUG=1 shows the traceback)",
            markup=False,
            highlight=False,
        )
        sys.exit(2)


def main() -> None:
    """The console script: click's usage errors exit 2 as they do; client errors too."""
    with _errors():
        app(prog_name="deepzoo")
