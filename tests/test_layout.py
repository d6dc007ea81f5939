"""The code's layering: what the worker, the benchmarks and the tests may import.

- The Celery worker never imports FastAPI or Starlette: the modules it shares with the API
  (``app.datasets``, ``app.storage``, ``app.workers_live``, …) raise plain exceptions
  (``app.refusals``) that the API routes translate into problems.
- ``bench/`` imports only app/, workers/, models/ and third-party packages, never tests/.
- The routers in ``app/api`` never import each other; they share ``app.api.deps`` and
  ``app.api.common``.
- A test imports no other test module and no conftest: shared helpers are in
  ``tests/support`` (and ``tests/stack.py``) or are fixtures.
"""

from __future__ import annotations

import ast
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


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_bench_does_not_import_tests() -> None:
    files = sorted((ROOT / "bench").rglob("*.py"))
    assert files
    offenders = [str(p.relative_to(ROOT)) for p in files if "tests" in _imported_roots(p)]
    assert offenders == []


API_SHARED = {"app.api.deps", "app.api.common"}  # what the routers may share


def _app_api_imports(path: Path) -> set[str]:
    """The ``app.api`` modules a module imports (``from app.api import x`` counts as x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("app.api."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "app.api":
                found.update(f"app.api.{a.name}" for a in node.names)
            elif node.module.startswith("app.api."):
                found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.add(f"app.api.{node.module or ''}")  # relative: another app.api module
    return found


def test_routers_do_not_import_each_other() -> None:
    """A module in app/api imports only deps and common from app/api: what two routers
    share lives there, never in a router."""
    files = sorted((ROOT / "app" / "api").glob("*.py"))
    assert len(files) > 5
    offenders = {
        str(p.relative_to(ROOT)): sorted(_app_api_imports(p) - API_SHARED)
        for p in files
        if _app_api_imports(p) - API_SHARED
    }
    assert offenders == {}


SHARED_TEST_MODULES = ("tests.support", "tests.stack")  # helpers any test may import


def _imported_modules(path: Path) -> list[str]:
    """Every module a file imports (``.`` prefixes for relative imports)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def _may_import(module: str) -> bool:
    if module.startswith(".") or module.split(".")[0] == "conftest":
        return False
    if module.split(".")[0] != "tests":
        return True
    return any(module == m or module.startswith(m + ".") for m in SHARED_TEST_MODULES)


def test_tests_import_no_other_test_module_nor_a_conftest() -> None:
    """Shared helpers live in tests/support (or are conftest fixtures): a test module
    imported by another runs its tests' imports twice and ties the two together."""
    files = sorted((ROOT / "tests").rglob("*.py"))
    assert any(p.name.startswith("test_") for p in files)
    offenders = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in files
        for m in _imported_modules(p)
        if not _may_import(m)
    ]
    assert offenders == []


def test_the_import_rule_sees_what_it_forbids() -> None:
    assert not _may_import("tests.conftest") and not _may_import("tests.api.test_jobs")
    assert not _may_import("conftest") and not _may_import(".test_runner")
    assert _may_import("tests.support.jobs") and _may_import("tests.stack")
    assert not _may_import("tests.stacks") and _may_import("models.registry")


CLIENT_IMPORTS = """
import sys
import deepzoo, deepzoo.cli
service = sorted(m for m in sys.modules if m.split(".")[0] in ("app", "models", "workers", "torch"))
print("\\n".join(service))
"""


def test_the_client_imports_nothing_of_the_service() -> None:
    """client/ (``import deepzoo``, the ``deepzoo`` command) talks HTTP only: no app/,
    models/ or workers/, no torch; it could be installed alone."""
    files = sorted((ROOT / "client").rglob("*.py"))
    assert len(files) > 3
    forbidden = {"app", "models", "workers", "torch", "tests"}
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imported_roots(p) & forbidden)
        for p in files
        if _imported_roots(p) & forbidden
    }
    assert offenders == {}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "client")}
    done = subprocess.run(
        [sys.executable, "-c", CLIENT_IMPORTS],
        cwd=ROOT / "client",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"the client imported: {done.stdout.split()}"
