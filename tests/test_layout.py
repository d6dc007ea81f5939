"""The code's layering: what the worker and the benchmarks may import.

- The Celery worker never imports FastAPI or Starlette: the modules it shares with the API
  (``app.datasets``, ``app.storage``, ``app.workers_live``, …) raise plain exceptions
  (``app.refusals``) that the API routes translate into problems.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER_IMPORTS = """
import sys
import workers.celery_app, workers.runner, workers.evaluation
web = sorted(m for m in sys.modules if m.split(".")[0] in ("fastapi", "starlette"))
print("\\n".join(web))
"""


def test_the_worker_imports_neither_fastapi_nor_starlette() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER_IMPORTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"the worker imported: {done.stdout.split()}"
