"""One real stack per backend for the end-to-end tests (see tests/stack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.stack import Stack
from tests.support.services import fresh_pg_database, redis_url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"stack-{request.param}")
    with ExitStack() as cleanup:
        if request.param == "sqlite":
            s = Stack(tmp, f"sqlite:///{tmp / 'deepzoo.db'}", None)
        else:
            s = Stack(tmp, cleanup.enter_context(fresh_pg_database()), redis_url(12))
        cleanup.callback(s.stop)
        s.start()
        yield s
