"""Where the API is and which key to send: arguments, then the environment, then the
files ``make run`` writes (the data directory's ``admin.key``)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000  # what `make run` serves (app/devserver.py)


def resolve_url(url: str | None = None) -> str:
    """``url``, else ``DEEPZOO_URL``, else ``http://DEEPZOO_HOST:DEEPZOO_PORT`` (the
    server's own settings; a wildcard host means this machine), else make run's."""
    url = url or os.environ.get("DEEPZOO_URL")
    if url:
        url = url.rstrip("/")
        return url if "://" in url else f"http://{url}"  # localhost:8000 is meant as HTTP
    host = os.environ.get("DEEPZOO_HOST") or DEFAULT_HOST
    if host in ("0.0.0.0", "::", "[::]"):
        host = DEFAULT_HOST
    port = os.environ.get("DEEPZOO_PORT") or DEFAULT_PORT
    return f"http://{host}:{port}"


def key_file() -> Path:
    """The admin key the server writes at its first start: ``DEEPZOO_DATA_DIR/admin.key``
    (``./var/admin.key`` by default, as in app/config.py)."""
    return Path(os.environ.get("DEEPZOO_DATA_DIR") or "./var") / "admin.key"


def resolve_key(key: str | None = None) -> str | None:
    """``key``, else ``DEEPZOO_API_KEY``, else the data directory's ``admin.key`` when it
    is readable; None when there is none (the API then answers 401)."""
    if key:
        return key
    if os.environ.get("DEEPZOO_API_KEY"):
        return os.environ["DEEPZOO_API_KEY"]
    try:
        return key_file().read_text().strip() or None
    except OSError:
        return None
