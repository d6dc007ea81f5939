"""``python -m app.db.migrate``: wait for the database, then ``alembic upgrade head``."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from alembic.config import Config
from sqlalchemy import text

from alembic import command
from app.db.session import get_engine

log = logging.getLogger("deepzoo.migrate")
ROOT = Path(__file__).resolve().parents[2]


def wait_for_database(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"database not reachable after {timeout:.0f}s: {exc}") from exc
            time.sleep(1.0)


def upgrade(timeout: float = 60.0, revision: str = "head") -> None:
    wait_for_database(timeout)
    with get_engine().begin() as connection:
        command.upgrade(_config(connection), revision)


def downgrade(revision: str) -> None:
    with get_engine().begin() as connection:
        command.downgrade(_config(connection), revision)


def _config(connection: object) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["connection"] = connection
    return cfg


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    upgrade()
    log.info("database at head: %s", get_engine().url.render_as_string(hide_password=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
