"""Bearer API keys: stored as SHA-256 digests, compared in constant time, never logged.

Keys are 256-bit random tokens, so a plain SHA-256 (no slow KDF) is enough: nothing
about them can be guessed from the digest.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from threading import Lock

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ApiKey, new_id, utcnow

log = logging.getLogger("deepzoo.auth")
KEY_PREFIX = "dz_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    key_id: str
    owner: str
    is_admin: bool


def create_key(
    session: Session,
    name: str,
    *,
    owner: str | None = None,
    admin: bool = False,
    key: str | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key (hashed) and return its row and the plaintext, shown once."""
    key = key or generate_key()
    key_id = new_id("key")
    row = ApiKey(
        id=key_id,
        name=name,
        owner=owner or key_id,
        prefix=key[:8],
        key_hash=hash_key(key),
        is_admin=admin,
    )
    session.add(row)
    session.flush()
    return row, key


class KeyCache:
    """A short-lived cache of key digest -> principal so a warm request reads no database.

    Revocation through this process's API evicts at once; other API replicas see it
    within ``ttl`` seconds.
    """

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._items: dict[str, tuple[float, Principal]] = {}
        self._lock = Lock()

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            item = self._items.get(digest)
            if item and item[0] > time.monotonic():
                return item[1]
            self._items.pop(digest, None)
            return None

    def put(self, digest: str, principal: Principal) -> None:
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[digest] = (time.monotonic() + self.ttl, principal)

    def evict_key(self, key_id: str) -> None:
        with self._lock:
            for digest in [d for d, (_, p) in self._items.items() if p.key_id == key_id]:
                del self._items[digest]


KEY_CACHE = KeyCache()


def authenticate(session: Session, presented: str) -> Principal | None:
    digest = hash_key(presented)
    cached = KEY_CACHE.get(digest)
    if cached is not None:
        return cached
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, digest):
        return None
    principal = Principal(row.id, row.owner, row.is_admin)
    KEY_CACHE.put(digest, principal)
    return principal


def bootstrap_admin(session: Session, settings: Settings) -> str | None:
    """Make sure an admin key exists; return the plaintext when this call created it.

    ``DEEPZOO_API_KEY`` is taken as the admin key when set; otherwise one is generated
    at the first start. Either way the key is written to ``data_dir/admin.key`` (0600)
    for the CLI and ``make run``.
    """
    wanted = settings.api_key
    if wanted:
        if session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(wanted))) is None:
            create_key(session, "admin", admin=True, key=wanted, owner="admin")
            _write_key_file(settings, wanted)
            return wanted
        _write_key_file(settings, wanted)
        return None
    if session.scalar(select(ApiKey.id).where(ApiKey.is_admin.is_(True)).limit(1)) is not None:
        return None
    _, key = create_key(session, "admin", admin=True, owner="admin")
    _write_key_file(settings, key)
    return key


def _write_key_file(settings: Settings, key: str) -> None:
    path = settings.key_file
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text().strip() == key:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.chmod(path, 0o600)


def revoke_key(session: Session, row: ApiKey) -> None:
    row.revoked_at = utcnow()
    KEY_CACHE.evict_key(row.id)
