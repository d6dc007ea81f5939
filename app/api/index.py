"""``/`` and ``/v1``: a JSON index of where to go; ``/`` answers a browser (``Accept:
text/html``) with the dashboard instead (app/dashboard)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import dashboard
from app.schemas import Index

router = APIRouter(tags=["index"])

LINKS = {
    "docs": "/docs",
    "redoc": "/redoc",
    "openapi": "/openapi.json",
    "models": "/v1/models",
    "datasets": "/v1/datasets",
    "jobs": "/v1/jobs",
    "keys": "/v1/keys",
    "health": "/healthz",
    "ready": "/readyz",
    "metrics": "/metrics",
}


def _index(request: Request) -> Index:
    root = request.scope.get("root_path", "")
    return Index(
        name=request.app.title,
        version=request.app.version,
        links={name: root + path for name, path in LINKS.items()},
    )


@router.get(
    "/",
    response_model=Index,
    summary="Index of links (no key needed); the dashboard for a browser",
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
)
def root(request: Request, response: Response) -> Index | Response:
    """The JSON index, or for a request that prefers ``text/html`` (a browser) the
    dashboard's page (docs/dashboard.md)."""
    if dashboard.wants_html(request):
        return dashboard.page()
    response.headers["Vary"] = "Accept"  # the same URL answers HTML to a browser
    return _index(request)


@router.get("/v1", response_model=Index, summary="Index of the v1 API's links (no key needed)")
def v1(request: Request) -> Index:
    return _index(request)
