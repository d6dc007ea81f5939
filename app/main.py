"""The FastAPI application: routers, problem details, limits, metrics, the reconciler loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import problems
from app.api import catalog, datasets, evaluation, generative, health, inference, jobs, keys
from app.auth import bootstrap_admin
from app.config import Settings, get_settings
from app.db.session import session_scope
from app.observability import PrometheusMiddleware
from app.reconciler import reconcile_once

log = logging.getLogger("deepzoo.api")


async def _reconcile_forever(settings: Settings) -> None:
    while True:
        try:
            await run_in_threadpool(reconcile_once, settings)
        except Exception:
            log.exception("reconciler pass failed")
        await asyncio.sleep(settings.reconcile_seconds)


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
    task = asyncio.create_task(_reconcile_forever(settings))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class BodyLimitMiddleware:
    """413 for bodies over the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_max_bytes: int) -> None:
        self.app, self.max_bytes, self.upload_max_bytes = app, max_bytes, upload_max_bytes

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
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._reject(scope, receive, send, limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(scope, receive, send, limit)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problems.problem_response(
            413, f"request body over the limit of {limit // (1024 * 1024)} MiB"
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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="DeepZoo",
        version="0.1.0",
        description="Train and serve every classic deep learning family over REST. "
        "Authenticate with `Authorization: Bearer <key>`.",
        lifespan=lifespan,
    )
    problems.install(app)
    v1_errors = problems.problem_responses(401, 403, 404, 409, 413, 422, 429, 503)
    routers = (catalog, datasets, jobs, inference, evaluation, generative, keys)
    for router in (r.router for r in routers):
        app.include_router(router, responses=v1_errors)
    app.include_router(health.router, responses=problems.problem_responses(503))
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
