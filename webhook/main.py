"""The webhook service: `uvicorn webhook.main:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from dicom_pipeline.db.engine import engine_for
from dicom_pipeline.logs import configure_logging
from dicom_pipeline.runtime import Runtime, get_runtime
from dicom_pipeline.tracing import configure_tracing
from webhook.errors import install_error_handlers
from webhook.launcher import RunLauncher
from webhook.metrics import DependencyCollector, HttpMetrics, PipelineCollector, RunCollector
from webhook.middleware import BodyLimitMiddleware, CorrelationIdMiddleware, MetricsMiddleware
from webhook.readiness import DependencyMonitor
from webhook.routes import health, ingestion


class WebhookConfigError(RuntimeError):
    """The service refuses to start without what it needs to be safe."""


def create_app(runtime: Runtime | None = None, *, launch_runs: bool = True) -> FastAPI:
    runtime = runtime or get_runtime()
    settings = runtime.settings
    configure_logging(settings.log_level, settings.log_format, process="webhook")
    configure_tracing("dicom-pipeline-webhook")
    if len(settings.webhook_token.get_secret_value()) < 16:
        raise WebhookConfigError("DICOM_PIPELINE_WEBHOOK_TOKEN must be set to a secret of at least 16 characters")

    launcher = RunLauncher(runtime)
    dependencies = DependencyMonitor(runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.engine  # noqa: B018 - applies migrations before the first request
        if launch_runs:
            launcher.start()
        dependencies.start()
        yield
        await dependencies.stop()
        await launcher.stop()

    app = FastAPI(
        title="dicom-pipeline webhook",
        version="1",
        description="Receives Orthanc's stable-study notifications and turns each into an ingest_study run.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry server spans (dicom_pipeline/tracing.py exports them):
        # one span per API request, continuing the caller's traceparent; probes and
        # /metrics untraced (a trace a second of nothing). Metrics are Prometheus's here,
        # and its log records could carry request bodies: both off.
        telemetry={
            "exclude": lambda scope: not str(scope.get("path", "")).startswith("/api/"),
            "operation_spans": False,
            "metrics": False,
            "logs": False,
        },
    )
    registry = CollectorRegistry()
    http_metrics = HttpMetrics(registry)
    registry.register(PipelineCollector(runtime.engine))
    registry.register(DependencyCollector(dependencies))
    if settings.dagster_database_url is not None:
        registry.register(RunCollector(engine_for(settings.dagster_database_url.get_secret_value())))
    app.state.runtime = runtime
    app.state.launcher = launcher
    app.state.dependencies = dependencies
    app.state.registry = registry
    install_error_handlers(app)
    app.include_router(ingestion.router)
    app.include_router(health.router)
    # Outermost first: the correlation id exists before anything can log or refuse.
    app.add_middleware(MetricsMiddleware, metrics=http_metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.webhook_max_body_bytes)
    app.add_middleware(CorrelationIdMiddleware)
    return app


def app() -> FastAPI:
    """Factory for `uvicorn --factory webhook.main:app`."""
    return create_app()
