"""Refusals raised by code that the workers import too, so free of FastAPI and Starlette.

``app.datasets``, ``app.storage`` and ``app.workers_live`` serve both the API and the
Celery worker. Their request-time checks raise a :class:`Refused` subclass; the API routes
that call them translate it (``app.problems.refusals_as_problems``) into the 422 problem
document the API has always answered: ``detail``, and one ``errors`` entry naming
``field``.
"""

from __future__ import annotations


class Refused(Exception):
    """A request refused on one field: the API answers 422 with ``detail`` and one
    ``errors`` entry ``{"path": field, "message": message, "type": kind}``."""

    def __init__(self, detail: str, *, field: str, message: str, kind: str) -> None:
        super().__init__(detail)
        self.detail, self.field, self.message, self.kind = detail, field, message, kind
