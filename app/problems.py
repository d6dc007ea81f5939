"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.refusals import Refused
from models.family import Unsupported

log = logging.getLogger("deepzoo.api")
PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; 422 adds `errors`, one per field path.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}


# one schema under components, referenced by every error response: a generated client
# gets one Problem class, not one copy per operation and status
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem documents with these status codes."""
    return {
        code: {
            "description": TITLES.get(code, "Error"),
            "content": {PROBLEM: {"schema": PROBLEM_REF}},
        }
        for code in codes
    }


def add_problem_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """Define ``Problem`` under the document's components (``PROBLEM_REF`` points there)."""
    openapi.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    return openapi


def field_problem(path: str, message: str, status: int = 422, kind: str | None = None) -> Problem:
    """A problem naming one field: ``detail`` "path: message" and one ``errors`` entry."""
    kind = kind or ("too_large" if status == 413 else "value_error")
    return Problem(
        status, f"{path}: {message}", errors=[{"path": path, "message": message, "type": kind}]
    )


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.title, self.type = status, detail, title, type_
        self.headers, self.extra = headers or {}, extra


@contextmanager
def refusals_as_problems() -> Iterator[None]:
    """Answer a :class:`~app.refusals.Refused` raised by code the workers share (the
    dataset, storage quota and live-worker checks) as its 422 problem."""
    try:
        yield
    except Refused as exc:
        raise Problem(
            422,
            exc.detail,
            errors=[{"path": exc.field, "message": exc.message, "type": exc.kind}],
        ) from None


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_,
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'params', 'hidden', 0) -> 'params.hidden[0]'; union branch names dropped."""
    parts: list[str] = []
    items = list(loc)
    if items and items[0] in ("body", "query", "path", "header"):
        kind = items.pop(0)
        if kind != "body" and items:
            parts.append(str(items.pop(0)))
    for i, item in enumerate(items):
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif ((i == 0 and not parts) or parts == ["spec"]) and _is_union_tag(item, items):
            # the discriminated union's branch name (the model) is not a field: at the top
            # of a job spec, or under a sweep's "spec"
            continue
        else:
            parts.append(str(item))
    return ".".join(parts) or "body"


def _is_union_tag(item: Any, items: list[Any]) -> bool:
    from models.registry import REGISTRY

    return isinstance(item, str) and item in REGISTRY and len(items) > 1


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        loc = err.get("loc", ())
        path = field_path(loc)
        if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            path = (path + ".model") if path != "body" else "model"
        errors.append({"path": path, "message": err.get("msg", "invalid"), "type": err.get("type")})
    return errors


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            title=exc.title,
            type_=exc.type,
            headers=exc.headers,
            instance=request.url.path,
            **exc.extra,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        return problem_response(
            exc.status_code,
            detail,
            headers=getattr(exc, "headers", None),
            instance=request.url.path,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        paths = ", ".join(sorted({e["path"] for e in errors}))
        return problem_response(
            422,
            f"invalid request: {paths}",
            title="Validation failed",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(Unsupported)
    async def _unsupported(request: Request, exc: Unsupported) -> JSONResponse:
        # a capability the model lacks (``Family.capability``) or a view it cannot draw:
        # 409 naming everything it can do, the catalog's ``capabilities``
        return problem_response(409, str(exc), instance=request.url.path, capabilities=exc.can)

    @app.exception_handler(OperationalError)
    @app.exception_handler(SQLAlchemyTimeoutError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # the database is unreachable, restarting or out of connections: nothing is wrong
        # with the request, so 503 and a time to come back rather than a 500
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(
            503,
            "the database is unavailable right now; retry shortly",
            headers={"Retry-After": "5"},
            instance=request.url.path,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "internal error; it has been logged", instance=request.url.path
        )
