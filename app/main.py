"""The FastAPI application: routers, problem details, limits, metrics, the reconciler loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import dashboard, problems
from app.api import (
    autoregressive,
    catalog,
    datasets,
    energy,
    evaluation,
    generative,
    gradients,
    graphs,
    health,
    index,
    inference,
    jobs,
    keys,
    leaderboard,
    rl,
    sweeps,
    trajectory,
)
from app.auth import bootstrap_admin
from app.config import Settings, get_settings
from app.db.session import session_scope
from app.observability import PrometheusMiddleware
from app.reconciler import reconcile_once

log = logging.getLogger("deepzoo.api")


# How long shutdown waits for a reconciler pass in progress. The pass runs in a thread,
# which cancelling the task awaiting it does not stop: without the wait it outlived the
# app, opening sessions on whatever engine the process held next (a test's next database).
RECONCILE_GRACE_SECONDS = 30.0


async def _reconcile_forever(settings: Settings, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await run_in_threadpool(reconcile_once, settings)
        except Exception:
            log.exception("reconciler pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.reconcile_seconds)


def _bootstrap(settings: Settings) -> None:
    with session_scope() as s:
        key = bootstrap_admin(s, settings)
    if key:
        # printed once, at the first start; also stored (0600) for the CLI and make run
        print(
            f"DeepZoo admin API key (shown once, saved to {settings.key_file}): {key}", flush=True
        )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    await run_in_threadpool(_bootstrap, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(_reconcile_forever(settings, stop))
    try:
        yield
    finally:
        stop.set()  # no new pass; the one in progress finishes (bounded) before we return
        try:
            await asyncio.wait_for(asyncio.shield(task), RECONCILE_GRACE_SECONDS)
        except TimeoutError:
            log.warning("reconciler pass still running after %ss", RECONCILE_GRACE_SECONDS)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# A client that sends a body past the limit without waiting for ``100 Continue`` (Python's
# urllib, requests and httpx all do) is still writing when the 413 is ready; closing the
# connection then resets it and the client never reads the answer. So the rest of the body
# is read and dropped first, bounded in bytes and in time, so that no client holds a
# connection past DRAIN_SECONDS this way (docs/security.md).
DRAIN_MAX_BYTES = 256 * 1024 * 1024
DRAIN_SECONDS = 30.0


async def drain(
    receive: Receive, max_bytes: int = DRAIN_MAX_BYTES, seconds: float = DRAIN_SECONDS
) -> bool:
    """Read and drop the rest of a request body: True once it is all read, False when
    ``max_bytes`` or ``seconds`` ran out first (or the client went away)."""
    loop = asyncio.get_running_loop()
    deadline, drained = loop.time() + seconds, 0
    while drained <= max_bytes:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            return False
        if message["type"] != "http.request":
            return False
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


class BodyLimitMiddleware:
    """413 for bodies over the limit, whether announced by Content-Length or streamed;
    the client reads it (the rest of its body is drained first, see ``drain``)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        upload_max_bytes: int,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        self.app, self.max_bytes, self.upload_max_bytes = app, max_bytes, upload_max_bytes
        self.drain_seconds = drain_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/datasets"
        # an upload's file may be DEEPZOO_MAX_UPLOAD_MB; the multipart envelope and the
        # other form fields get a little room beyond it
        limit = self.upload_max_bytes + _ENVELOPE if upload else self.max_bytes
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        # a client waiting for 100 Continue has sent nothing yet: answer at once (reading
        # would tell it to go on and send the whole body)
        waiting = headers.get(b"expect", b"").lower() == b"100-continue"
        if length is not None and (not length.isdigit() or int(length) > limit):
            drained = False
            if length.isdigit() and not waiting and int(length) <= DRAIN_MAX_BYTES:
                drained = await drain(receive, seconds=self.drain_seconds)
            await self._reject(scope, receive, send, limit, close=not drained)
            return
        seen, over, ended = 0, False, False

        async def limited() -> Message:
            nonlocal seen, over, ended
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                ended = not message.get("more_body", False)
                if seen > limit:
                    over = True
                    raise _TooLarge(limit)
            return message

        async def drained_send(message: Message) -> None:
            # the app answers 413 through its exception handler once ``limited`` raised:
            # drain the rest of the body before that answer starts
            nonlocal over
            if over and message["type"] == "http.response.start":
                over = False
                if not ended and not await drain(receive, seconds=self.drain_seconds):
                    # the rest of the body is still coming: close rather than wait for it
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, limited, drained_send)
        except _TooLarge:
            await self._reject(scope, receive, drained_send, limit)

    async def _reject(
        self, scope: Scope, receive: Receive, send: Send, limit: int, close: bool = False
    ) -> None:
        response = problems.problem_response(
            413,
            f"request body over the limit of {limit // (1024 * 1024)} MiB",
            headers={"Connection": "close"} if close else None,
        )
        await response(scope, receive, send)


_ENVELOPE = 64 * 1024


class _TooLarge(StarletteHTTPException):
    """Raised from ``receive`` mid-stream. An HTTPException, so that FastAPI's body
    parsing passes it on (it turns other errors into 400) and it is answered 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit // (1024 * 1024)} MiB")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)


class DeepZoo(FastAPI):
    def openapi(self) -> dict[str, Any]:
        return problems.add_problem_schema(super().openapi())


# Swagger UI and ReDoc from the fastapi-offline wheel, not a CDN: /docs works offline
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_STATIC = "/static/docs"


def add_docs(app: FastAPI) -> None:
    assert app.openapi_url is not None and app.swagger_ui_oauth2_redirect_url is not None
    openapi_url, redirect_url = app.openapi_url, app.swagger_ui_oauth2_redirect_url
    app.mount(DOCS_STATIC, StaticFiles(directory=DOCS_ASSETS), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=redirect_url,
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_STATIC}/favicon.png",
            with_google_fonts=False,
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = DeepZoo(
        title="DeepZoo",
        version="0.1.0",
        description="Train and serve every classic deep learning family over REST. "
        "Authenticate with `Authorization: Bearer <key>` (Authorize, above). "
        "Errors are RFC 9457 problem details (`application/problem+json`).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    problems.install(app)
    add_docs(app)
    dashboard.mount(app)
    v1_errors = problems.problem_responses(401, 403, 404, 409, 413, 422, 429, 503)
    routers = [catalog, datasets, jobs, inference, evaluation, generative, autoregressive, rl]
    routers += [energy, gradients, graphs, keys, leaderboard, sweeps, trajectory]
    for router in (r.router for r in routers):
        app.include_router(router, responses=v1_errors)
    app.include_router(health.router, responses=problems.problem_responses(503))
    app.include_router(index.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_mb * 1024 * 1024,
        upload_max_bytes=settings.max_upload_mb * 1024 * 1024,
    )
    app.add_middleware(PrometheusMiddleware)
    return app


app = create_app()
