"""A real stack (SQLite, the embedded Redis, one worker) and a real chromium for the
dashboard's browser tests. Chromium is Debian's (/usr/bin/chromium; .ci/run installs it):
Playwright's own browser download is not used. A missing chromium fails, never skips."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stack import Stack

VIEWPORT = {"width": 1280, "height": 800}


def chromium_path() -> str:
    path = os.environ.get("DEEPZOO_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail(
            "the dashboard's browser tests need Debian's chromium: apt-get install -y chromium "
            "(.ci/run installs it), or DEEPZOO_CHROMIUM=/path/to/chrome"
        )
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("dashboard-stack")
    s = Stack(tmp, f"sqlite:///{tmp / 'deepzoo.db'}", None)
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the dev extra pins it
        pytest.fail("pip install -e '.[dev]' (playwright) for the dashboard's browser tests")
    path = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def page(
    browser: Any,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """A fresh tab (its own session storage) at 1280×800. Whatever the outcome, a screenshot
    of the page the test ends on goes to ``DEEPZOO_SCREENSHOTS`` (default: the run's
    temporary directory, ``dashboard-screenshots/``); on failure the console's messages too."""
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    pg.console_messages = console
    requests: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.requested = requests
    try:
        yield pg
    finally:
        out = Path(
            os.environ.get("DEEPZOO_SCREENSHOTS")
            or Path(tmp_path_factory.getbasetemp()) / "dashboard-screenshots"
        )
        out.mkdir(parents=True, exist_ok=True)
        shot = out / f"{request.node.name}.png"
        rep = getattr(request.node, "rep_call", None)
        try:
            pg.screenshot(path=str(shot), full_page=True)
            if rep is not None and rep.failed:
                (out / f"{request.node.name}.console.txt").write_text("\n".join(console))
                print(f"screenshot of the failed page: {shot}")
        except Exception as exc:  # the page may be gone
            print(f"no screenshot: {exc}")
        context.close()
