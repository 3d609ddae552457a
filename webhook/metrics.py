"""Prometheus metrics: HTTP by route and status, and pipeline gauges read from the database."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text

from webhook.readiness import DependencyMonitor

log = logging.getLogger("webhook.metrics")


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "dicom_webhook_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "dicom_webhook_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


# Nothing here scans a big table: studies and versions come from PostgreSQL's statistics
# (kept current by autovacuum; an estimate), the newest version through its primary key, and
# the counted sets (pending events, open letters, unlaunched requests) are small by nature,
# pending events through their partial index.
PIPELINE_QUERY = text(
    """
    SELECT
      (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'study'::regclass) AS studies,
      (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'study_version'::regclass) AS versions,
      (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS pending_outbox,
      (SELECT extract(epoch FROM now() - created_at) FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1)
        AS oldest_pending_age,
      (SELECT count(*) FROM dead_letter WHERE resolved_at IS NULL) AS open_dead_letters,
      (SELECT extract(epoch FROM now() - created_at) FROM study_version ORDER BY id DESC LIMIT 1)
        AS last_ingestion_age,
      (SELECT count(*) FROM ingestion_request WHERE run_id IS NULL AND status = 'accepted') AS unlaunched
    """
)


class PipelineCollector(Collector):
    """Reads the gauges on each scrape, so every replica reports the same truth."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(PIPELINE_QUERY).one()
        except Exception:  # noqa: BLE001 - a scrape must not fail because PostgreSQL is down
            log.warning("pipeline gauges unavailable: database query failed")
            up = GaugeMetricFamily("dicom_pipeline_database_up", "Whether the metadata database answered")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("dicom_pipeline_database_up", "Whether the metadata database answered")
        up.add_metric([], 1)
        yield up
        for name, help_text, value in (
            ("dicom_pipeline_studies", "Studies in the metadata database (planner estimate)", row.studies),
            ("dicom_pipeline_study_versions", "Study versions recorded (planner estimate)", row.versions),
            ("dicom_pipeline_outbox_pending", "Events not yet acknowledged by Kafka", row.pending_outbox),
            ("dicom_pipeline_dead_letters_open", "Dead letters not yet resolved", row.open_dead_letters),
            ("dicom_pipeline_webhook_requests_unlaunched", "Accepted webhook requests without a run", row.unlaunched),
        ):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], float(value or 0))
            yield gauge
        age = GaugeMetricFamily("dicom_pipeline_last_ingestion_age_seconds", "Seconds since the last new version")
        age.add_metric([], float(row.last_ingestion_age) if row.last_ingestion_age is not None else float("nan"))
        yield age
        waiting = GaugeMetricFamily(
            "dicom_pipeline_outbox_oldest_pending_age_seconds", "Age of the oldest event Kafka has not acknowledged"
        )
        waiting.add_metric([], float(row.oldest_pending_age) if row.oldest_pending_age is not None else 0.0)
        yield waiting


# Dagster's `runs` table, through its (status, update_timestamp) index: the last hour only.
RUNS_QUERY = text(
    """
    SELECT status, count(*) AS runs FROM runs
    WHERE status IN ('SUCCESS', 'FAILURE', 'CANCELED')
      AND update_timestamp > now() AT TIME ZONE 'UTC' - interval '1 hour'  -- Dagster keeps UTC, naive
    GROUP BY status
    """
)


class RunCollector(Collector):
    """dicom_pipeline_runs_finished_last_hour{status=...}: Dagster runs that ended in the
    last hour, read from Dagster's own storage (the failure-ratio alert's input)."""

    def __init__(self, dagster_engine: Engine) -> None:
        self.engine = dagster_engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.engine.connect() as conn:
                counts = {status: int(runs) for status, runs in conn.execute(RUNS_QUERY)}
        except Exception:  # noqa: BLE001 - a scrape must not fail because a database is down
            log.warning("run gauges unavailable: Dagster's database query failed")
            return
        gauge = GaugeMetricFamily(
            "dicom_pipeline_runs_finished_last_hour", "Dagster runs that ended in the last hour", labels=["status"]
        )
        for status in ("SUCCESS", "FAILURE", "CANCELED"):
            gauge.add_metric([status], float(counts.get(status, 0)))
        yield gauge


class DependencyCollector(Collector):
    """dicom_pipeline_dependency_up{dependency=...}: the background monitor's last look."""

    def __init__(self, monitor: DependencyMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "dicom_pipeline_dependency_up", "Whether each dependency answered its last check", labels=["dependency"]
        )
        for name, state in sorted(self.monitor.states.items()):
            gauge.add_metric([name], 1.0 if state == "ok" else 0.0)
        yield gauge
