"""OpenTelemetry traces: one trace from the webhook's caller to the Kafka produce.

The W3C `traceparent` of a study's trace travels the way the correlation id does: from the
webhook's caller (or a new trace, at the webhook or at the sensor that requests the run)
into the ingestion request and the run's tags (`defs.tags.TRACEPARENT`); the run is a span of
that trace (in the worker that executes it), each op a span within the run, and each event
is produced in a span whose context the message carries in its `traceparent` header (and
as the CloudEvents `ce_traceparent` extension).

Configured by the standard variables: spans are exported (OTLP over HTTP) only when
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set and
`OTEL_TRACES_EXPORTER` is not `none`; `OTEL_SERVICE_NAME` names the process (each process
has a default). Off, nothing is recorded, and a caller's `traceparent` still travels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_configured = False


def tracing_enabled() -> bool:
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure_tracing(service_name: str) -> None:
    """An OTLP exporter for this process when the environment names one; idempotent. Call
    it in the process that records spans (after a fork: the batch's thread is the child's)."""
    global _configured
    if _configured or not tracing_enabled():
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def flush_spans(timeout_millis: int = 5000) -> None:
    """Export what is batched (before a process exits, or a test looks)."""
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_millis)


def tracer() -> trace.Tracer:
    return trace.get_tracer("dicom_pipeline")


def context_of(traceparent: str | None) -> otel_context.Context | None:
    """The trace a `traceparent` names, or None (malformed ones are ignored, as W3C says)."""
    if not traceparent:
        return None
    extracted = _propagator.extract({"traceparent": traceparent})
    if not trace.get_current_span(extracted).get_span_context().is_valid:
        return None
    return extracted


def traceparent_of(span: Span | None = None) -> str | None:
    """The `traceparent` of a span (by default the current one), None outside any trace."""
    carrier: dict[str, str] = {}
    ctx = trace.set_span_in_context(span) if span is not None else None
    _propagator.inject(carrier, context=ctx)
    return carrier.get("traceparent")


@contextmanager
def span(
    name: str,
    *,
    parent: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | bool] | None = None,
) -> Iterator[Span]:
    """A span made current for the block: a child of `parent` (a traceparent) when given,
    else of the current span, else the root of a new trace."""
    ctx = context_of(parent)
    with tracer().start_as_current_span(name, context=ctx, kind=kind, attributes=dict(attributes or {})) as current:
        yield current


def new_trace_traceparent(name: str, attributes: Mapping[str, str | int | bool] | None = None) -> str | None:
    """A new trace's root span, ended at once, for work handed to another process (a sensor
    requesting a run): its traceparent goes with the work; None when tracing is off."""
    with tracer().start_as_current_span(name, attributes=dict(attributes or {})) as root:
        return traceparent_of(root)
