"""Liveness, readiness (database and broker reachable) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from app.db.session import get_engine
from app.observability import REGISTRY
from app.problems import problem_response
from app.queue import broker_ok
from app.schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _database_ok() -> bool:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@router.get("/readyz", response_model=None, responses={200: {"model": Ready}})
async def readyz() -> Response | dict[str, str]:
    db, broker = await run_in_threadpool(_database_ok), await run_in_threadpool(broker_ok)
    checks = {
        "database": "ok" if db else "unreachable",
        "broker": "ok" if broker else "unreachable",
    }
    if db and broker:
        return {"status": "ready", **checks}
    return problem_response(
        503, "not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()), checks=checks
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
