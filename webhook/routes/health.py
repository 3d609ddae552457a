"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.readiness import REQUIRED, DependencyMonitor
from webhook.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process is alive (no dependency is checked)."""
    return Health(status="ok")


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request) -> JSONResponse:
    """200 when a request can be accepted durably (PostgreSQL answers); the body lists every
    dependency's state, and `degraded` the ones that do not answer (they do not fail it)."""
    monitor: DependencyMonitor = request.app.state.dependencies
    checks = await monitor.refresh()
    ok = checks.get(REQUIRED) == "ok"
    degraded = sorted(name for name, state in checks.items() if state != "ok" and name != REQUIRED)
    body = Readiness(status="ready" if ok else "unavailable", checks=checks, degraded=degraded)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
