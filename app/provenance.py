"""What a job needs to be rerun: package versions and the code revision."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@lru_cache
def code_revision() -> str | None:
    if os.environ.get("DEEPZOO_REVISION"):
        return os.environ["DEEPZOO_REVISION"]
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@lru_cache
def code_provenance() -> dict[str, Any]:
    return {
        "code_revision": code_revision(),
        "python": platform.python_version(),
        "packages": {d: _version(d) for d in ("deepzoo", "torch", "numpy", "scikit-learn")},
    }
