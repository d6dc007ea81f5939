"""Liveness, readiness (database and broker reachable), the live workers and Prometheus
metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminPrincipal
from app.config import get_settings
from app.db.session import get_engine
from app.observability import REGISTRY
from app.problems import Problem, problem_response, problem_responses
from app.queue import QUEUES, broker_ok
from app.schemas import Health, Ready
from app.workers_live import read_registry

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
async def readyz() -> Response | dict[str, Any]:
    db, broker = await run_in_threadpool(_database_ok), await run_in_threadpool(broker_ok)
    checks = {
        "database": "ok" if db else "unreachable",
        "broker": "ok" if broker else "unreachable",
    }
    if db and broker:
        # informational: the API is ready to accept jobs even before any worker is up
        reg = await run_in_threadpool(read_registry)
        return {"status": "ready", **checks, "workers": len(reg.workers) if reg else None}
    return problem_response(
        503, "not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()), checks=checks
    )


@router.get("/v1/workers", tags=["workers"], responses=problem_responses(401, 403, 503))
def workers(_: AdminPrincipal) -> dict[str, Any]:
    """Admin: the live workers (the registry in Redis, app/workers_live.py) and, per
    queue, how many serve it and for how long none has."""
    reg = read_registry()
    if reg is None:
        raise Problem(503, "the broker (where workers advertise) is unreachable")
    grace = get_settings().no_worker_grace_seconds
    queues = {}
    for q in sorted({*QUEUES, *reg.live_queues()}):
        live = sum(q in w.get("queues", []) for w in reg.workers)
        queues[q] = {"workers": live, "unserved_seconds": round(reg.unserved_seconds(q), 1)}
    workers = [
        {**w, "seen_seconds_ago": round(max(0.0, reg.now - w.get("seen_at", reg.now)), 1)}
        for w in sorted(reg.workers, key=lambda w: str(w.get("name")))
    ]
    return {"workers": workers, "queues": queues, "no_worker_grace_seconds": grace}


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
