"""The real services the tests run on: a fresh PostgreSQL database, an emptied Redis
database (bench/stack.py's launchers; a missing service fails the test), and the app's
process-wide caches to reset when the settings change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench import stack as shared


@contextmanager
def _required() -> Iterator[None]:
    try:
        yield
    except shared.ServiceUnavailable as exc:
        pytest.fail(f"{exc} (.ci/run starts it)")


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards (bench/stack.py's)."""
    with _required(), shared.fresh_pg_database("deepzoo_t") as url:
        yield url


def redis_url(db: int) -> str:
    """The machine's Redis, database ``db`` emptied (bench/stack.py's)."""
    with _required():
        return shared.redis_url(db)


def reset_caches() -> None:
    """Forget what the app cached from the settings (engine, queue client, keys, models)."""
    from app import auth, inference, provenance, queue
    from app.config import get_settings
    from app.db.session import reset_engine

    get_settings.cache_clear()
    reset_engine()
    queue.client.cache_clear()
    auth.KEY_CACHE._items.clear()
    inference._CACHE = None
    provenance.code_provenance.cache_clear()
