"""One OpenTelemetry trace from the webhook's caller (or the sensor that requested the run) to
the Kafka produce, in a real Jaeger (#22).

The caller's W3C traceparent goes into the ingestion request and the run's tags; the run
(in the Celery worker), each of its ops and the produce of its event are spans of that
trace, exported over OTLP by each process; the message carries the produce span's
traceparent (and `ce_traceparent`). A run the change-feed sensor requests starts a trace
of its own, whose root is the sensor's request."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dicom_pipeline_dev.stack.jaeger import JaegerService
from dicom_pipeline_dev.stack.layout import StackLayout

from dicom_pipeline.settings import Settings
from tests.e2e.system import System, SystemPool, wait_for
from tests.helpers import KafkaTap, all_requests_finished, seed_one

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 180  # a hang guard: the run lands in seconds, spans are exported every 0.5 s
OPS = ("extract_study", "store_raw", "persist_metadata", "publish_events")


@pytest.fixture(scope="module")
def jaeger(stack_settings: Settings) -> JaegerService:
    """The stack's Jaeger, started on request (built once, then cached)."""
    service = JaegerService(StackLayout(stack_settings))
    if service.running_pid() is None or not service.answers():
        service.install()
        service.start()
    return service


@pytest.fixture(scope="module")
def traced_systems(
    stack_settings: Settings, jaeger: JaegerService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SystemPool]:
    """Systems whose every process exports its spans to the stack's Jaeger."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_endpoint)
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "500")
        pool = SystemPool(stack_settings, Path(tmp_path_factory.mktemp("traced")))
        try:
            yield pool
        finally:
            pool.close()


@pytest.fixture()
def traced_system(traced_systems: SystemPool) -> System:
    """Sensor stopped: the webhook is the only trigger."""
    system = traced_systems.get("webhook", sensor=False)
    system.ensure(dagster=True, webhook=True)
    return system


@pytest.fixture()
def sensor_system(traced_systems: SystemPool) -> System:
    """The change-feed sensor is the only trigger (no webhook for Orthanc's own call)."""
    system = traced_systems.get("sensor", sensor=True)
    system.ensure(dagster=True, webhook=False)
    return system


def _spans_by_name(trace: dict[str, Any]) -> tuple[dict[str, str], dict[str, str | None]]:
    """Each span's id, and its parent's id, by span name."""
    spans = {str(s["operationName"]): s for s in trace["spans"]}
    parent_of = {
        name: next((r["spanID"] for r in s.get("references", []) if r["refType"] == "CHILD_OF"), None)
        for name, s in spans.items()
    }
    return {name: s["spanID"] for name, s in spans.items()}, parent_of


def _complete_trace(jaeger: JaegerService, trace_id: str, wanted: set[str]) -> dict[str, Any]:
    def complete() -> dict[str, Any] | None:
        found = _trace(jaeger, trace_id)
        names = {str(s["operationName"]) for s in found["spans"]} if found else set()
        return found if wanted <= names else None

    trace = wait_for(complete, RUN_TIMEOUT, f"trace {trace_id} with {sorted(wanted)}")
    assert isinstance(trace, dict)
    return trace


def _trace(jaeger: JaegerService, trace_id: str) -> dict[str, Any] | None:
    response = requests.get(f"{jaeger.query_url}/api/traces/{trace_id}", timeout=10)
    if response.status_code != 200:
        return None
    data = response.json().get("data") or []
    return data[0] if data else None


def test_a_webhook_callers_trace_holds_the_request_the_run_its_ops_and_the_produce(
    stack_settings: Settings, traced_system: System, jaeger: JaegerService, events: KafkaTap
) -> None:
    trace_id = secrets.token_hex(16)
    caller = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    seeded, spec = seed_one(stack_settings, series=1, instances=2)
    # At once, before Orthanc's own call (after StableAge) asks for the same study: this
    # request launches the run (the later one shares it while it runs).
    response = requests.post(
        f"{traced_system.webhook_url}/api/v1/ingestion/studies",
        json={"ID": seeded.orthanc_id},
        headers={
            "Authorization": f"Bearer {stack_settings.webhook_token.get_secret_value()}",
            "traceparent": caller,
        },
        timeout=10,
    )
    assert response.status_code == 202, response.text
    wait_for(lambda: all_requests_finished(seeded.orthanc_id), RUN_TIMEOUT, "the request to finish")

    # This request's run: Orthanc's own call (after StableAge) gets a run of its own, in a
    # trace of its own, when this one has already finished by then.
    request_id = response.json()["request_id"]
    runs: list[Any] = traced_system.study_runs(seeded.orthanc_id)
    tags_of_runs = [{t["key"]: t["value"] for t in run["tags"]} for run in runs]
    run_tags = next((tags for tags in tags_of_runs if tags.get("dicom/request_id") == request_id), None)
    assert run_tags is not None, f"no run for request {request_id}: {tags_of_runs}"
    assert run_tags["dicom/traceparent"].split("-")[1] == trace_id, run_tags

    wanted = {"POST /api/v1/ingestion/studies", "run ingest_study", *OPS, "dicom.metadata.v1 publish"}
    trace = _complete_trace(jaeger, trace_id, wanted)
    ids, parent_of = _spans_by_name(trace)
    # webhook request -> run -> each op; the produce within the persist op that wrote the event.
    assert parent_of["POST /api/v1/ingestion/studies"] == caller.split("-")[2]
    assert parent_of["run ingest_study"] == ids["POST /api/v1/ingestion/studies"]
    assert all(parent_of[op] == ids["run ingest_study"] for op in OPS), parent_of
    assert parent_of["dicom.metadata.v1 publish"] == ids["persist_metadata"]
    services = {p["serviceName"] for p in trace["processes"].values()}
    assert {"dicom-pipeline-webhook", "dicom-pipeline-worker"} <= services, services

    message = next(m for m in events.read(expected=1, key=spec.study_uid))
    produce = f"00-{trace_id}-{ids['dicom.metadata.v1 publish']}-01"
    assert (message.headers.get("traceparent"), message.headers.get("ce_traceparent")) == (produce, produce)


def test_a_run_the_change_feed_requests_is_one_trace_from_the_sensors_request_to_the_produce(
    stack_settings: Settings, sensor_system: System, jaeger: JaegerService, events: KafkaTap
) -> None:
    seeded, spec = seed_one(stack_settings, series=1, instances=2)

    def run_of_study() -> dict[str, Any] | None:
        runs: list[Any] = sensor_system.study_runs(seeded.orthanc_id)
        return runs[0] if runs else None

    run = wait_for(run_of_study, RUN_TIMEOUT, "the change feed's run of the study")
    assert isinstance(run, dict)
    run_tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run_tags["dicom/trigger"] == "sensor", run_tags
    trace_id = run_tags["dicom/traceparent"].split("-")[1]

    root = "sensor: request ingest_study"
    trace = _complete_trace(jaeger, trace_id, {root, "run ingest_study", *OPS, "dicom.metadata.v1 publish"})
    ids, parent_of = _spans_by_name(trace)
    # The sensor's request is the root (a new trace, no caller); the run continues it.
    assert parent_of[root] is None
    assert run_tags["dicom/traceparent"].split("-")[2] == ids[root]
    assert parent_of["run ingest_study"] == ids[root]
    assert all(parent_of[op] == ids["run ingest_study"] for op in OPS), parent_of
    assert parent_of["dicom.metadata.v1 publish"] == ids["persist_metadata"]
    services = {p["serviceName"] for p in trace["processes"].values()}
    assert {"dicom-pipeline-dagster", "dicom-pipeline-worker"} <= services, services

    message = next(m for m in events.read(expected=1, key=spec.study_uid))
    version, message_trace, parent, flags = str(message.headers.get("traceparent")).split("-")
    assert (version, message_trace, parent) == ("00", trace_id, ids["dicom.metadata.v1 publish"])
    # Sampled; a trace the SDK started also says its id is random (W3C level 2: 0x02).
    assert int(flags, 16) & 0x01, flags
