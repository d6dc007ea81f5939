"""The client's exceptions: every problem document the API answers is one ``ProblemError``."""

from __future__ import annotations

from typing import Any


class DeepZooError(Exception):
    """Anything the client raises on purpose."""


class ProblemError(DeepZooError):
    """An RFC 9457 problem document (``application/problem+json``) from the API.

    ``errors`` is the API's field list, ``[{"path", "message", "type"}, ...]`` (422s and
    some 413s); ``fields`` their paths. ``retry_after`` is the ``Retry-After`` header in
    seconds, when the answer had one (429, 503).
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type: str = "about:blank",
        errors: list[dict[str, Any]] | None = None,
        instance: str | None = None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail, self.type = status, title, detail, type
        self.errors = list(errors or [])
        self.instance, self.retry_after = instance, retry_after
        self.body = dict(body or {})

    @property
    def fields(self) -> list[str]:
        """The field paths the API named (``params.hidden[0]``, ``train.epochs``, ...)."""
        return [str(e.get("path")) for e in self.errors if e.get("path")]


class TransportError(DeepZooError):
    """The API could not be reached, or the connection broke (after any retries)."""


class WaitTimeout(DeepZooError, TimeoutError):
    """``wait`` gave up before the job finished."""
