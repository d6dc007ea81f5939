"""``/`` and ``/v1``: a JSON index of where to go (the dashboard will take ``/`` later)."""

from __future__ import annotations

from fastapi import APIRouter, Request

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


@router.get("/", response_model=Index, summary="Index of links (no key needed)")
def root(request: Request) -> Index:
    return _index(request)


@router.get("/v1", response_model=Index, summary="Index of the v1 API's links (no key needed)")
def v1(request: Request) -> Index:
    return _index(request)
