"""Trace context without a backend: a caller's traceparent still travels; nothing is invented."""

from __future__ import annotations

from dicom_pipeline.tracing import context_of, span, traceparent_of

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_malformed_traceparent_is_ignored_and_no_trace_is_invented_outside_one() -> None:
    assert context_of("00-not-a-trace-01") is None
    assert context_of("") is None
    assert traceparent_of() is None
    with span("no parent") as orphan:
        # Tracing is off in the unit tests (no OTEL_* endpoint): no new trace either.
        assert traceparent_of(orphan) is None


def test_with_tracing_off_a_callers_trace_still_travels() -> None:
    assert context_of(CALLER) is not None
    with span("child", parent=CALLER) as child:
        assert traceparent_of(child) == CALLER
        assert traceparent_of() == CALLER
