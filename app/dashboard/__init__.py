"""The dashboard: a static single-page app served at ``/`` to browsers (docs/dashboard.md).

``index.html`` is answered by ``GET /`` when the request asks for ``text/html`` (the JSON
index stays for every other client); its CSS and ES modules are served from
``/dashboard/`` out of this package, so a non-editable install has them and nothing is
fetched from a CDN. The page holds no inline script or style, so its Content-Security-Policy
allows scripts from this origin only.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

HERE = Path(__file__).parent
STATIC = HERE / "static"
PREFIX = "/dashboard"

# script-src 'self': no inline script can run, even if some user-supplied text were ever
# inserted as markup; img-src blob: for the pictures fetched with the key; connect-src
# 'self': the key is only ever sent to this origin
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache", "Vary": "Accept"}


def wants_html(request: Request) -> bool:
    """A browser's navigation (``Accept: text/html,...``) rather than an API client's
    ``*/*`` or ``application/json``: the first of the two named in ``Accept`` wins."""
    accept = request.headers.get("accept", "").lower()
    html, json = accept.find("text/html"), accept.find("application/json")
    return html >= 0 and (json < 0 or html < json)


@cache
def _page() -> str:
    return (HERE / "index.html").read_text(encoding="utf-8")


def page() -> HTMLResponse:
    return HTMLResponse(_page(), headers=HEADERS)


class _Assets(StaticFiles):
    """The dashboard's CSS and modules, with the page's CSP (no-cache: revalidated, so a
    new release's modules are picked up with their ETag)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount(app: FastAPI) -> None:
    app.mount(PREFIX, _Assets(directory=STATIC), name="dashboard")
