"""The app's shutdown waits for the reconciler pass in progress. The pass runs in a thread
that cancelling its task does not stop; CI once saw such a thread, left over from one
test's app, bind the next test's sessions to a database without tables."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from app import main
from app.config import Settings
from app.db.session import get_engine


def test_shutdown_waits_for_the_reconciler_pass_in_progress(
    api_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, finished = threading.Event(), threading.Event()
    real = main.reconcile_once

    def slow_pass(settings: Settings) -> dict[str, int]:
        started.set()
        time.sleep(0.5)  # still running when the client below has already left
        out = real(settings)
        finished.set()
        return out

    monkeypatch.setattr(main, "reconcile_once", slow_pass)
    with TestClient(main.create_app()):
        assert started.wait(10)
    assert finished.is_set(), "the app shut down while its reconciler pass still ran"


def test_no_new_pass_after_shutdown(api_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    passes: list[float] = []
    real = main.reconcile_once

    def counted(settings: Settings) -> dict[str, int]:
        passes.append(time.monotonic())
        return real(settings)

    monkeypatch.setattr(main, "reconcile_once", counted)
    monkeypatch.setenv("DEEPZOO_RECONCILE_SECONDS", "0.05")
    from app.config import get_settings

    get_settings.cache_clear()
    with TestClient(main.create_app()):
        deadline = time.monotonic() + 10
        while len(passes) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    after = len(passes)
    assert after >= 2  # it does loop while the app runs
    time.sleep(0.3)
    assert len(passes) == after
    get_engine()  # the engine still answers for the next user of this process
