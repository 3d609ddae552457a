"""Latency (stable in Orthanc -> event on Kafka) and sustained rate, through the real daemon."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from dicom_pipeline_dev.seed.runner import orthanc_client
from dicom_pipeline_dev.seed.send import upload_rest
from dicom_pipeline_dev.seed.synth import SeedPlan, build_instances, plan_studies

from bench.archive import seed_small_studies
from bench.postgres_meter import cpu_of_trees, read_postgres, spent
from dicom_pipeline.settings import Settings
from tests.e2e.system import running_system
from tests.helpers import KafkaTap, clear_change_log


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def latency(settings: Settings, studies: int, seed: int, *, webhook: bool) -> list[tuple[str, str]]:
    """One 10-instance study at a time; stable moment = last upload + StableAge."""
    path = "webhook" if webhook else "sensor"
    clear_change_log(settings)
    samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, running_system(settings, Path(tmp), sensor=not webhook) as system:
        system.start_dagster()
        if webhook:
            system.start_webhook()
        tap = KafkaTap(settings, settings.kafka_topic)
        try:
            for index in range(studies):
                spec = plan_studies(
                    SeedPlan(
                        studies=1,
                        modalities=("CT",),
                        series_per_study=1,
                        instances_per_series=10,
                        rows=64,
                        columns=64,
                        seed=seed + index,
                    )
                )[0]
                with orthanc_client(settings) as client:
                    upload_rest(client, build_instances(spec, seed))
                stable_at = time.monotonic() + settings.orthanc_stable_age
                if tap.read(expected=1, timeout=180, key=spec.study_uid):
                    samples.append(time.monotonic() - stable_at)
        finally:
            tap.close()
    return [
        (
            f"{path} latency, stable -> event ({len(samples)} of {studies} studies of 10 instances)",
            f"median {statistics.median(samples):.1f} s, p95 {_percentile(samples, 0.95):.1f} s"
            + (" (target: p50 <= 1.5 s)" if webhook else ""),
        ),
        (
            f"{path} latency, last upload -> event (StableAge {settings.orthanc_stable_age} s included)",
            f"median {statistics.median(samples) + settings.orthanc_stable_age:.1f} s"
            + (" (target: median <= 4.0 s)" if webhook else ""),
        ),
    ]


def sustained(settings: Settings, studies: int, seed: int, workers: int = 1) -> list[tuple[str, str]]:
    """`studies` small studies arrive at once; the sensor gives each its own run, and
    `workers` Celery worker hosts (2 processes each) execute them. CPU counts Dagster's
    processes and the workers, and PostgreSQL's backends (bench/postgres_meter.py)."""
    clear_change_log(settings)
    with tempfile.TemporaryDirectory() as tmp, running_system(settings, Path(tmp), sensor=True) as system:
        system.start_dagster(workers=workers)
        tap = KafkaTap(settings, settings.kafka_topic)
        time.sleep(10)  # past the processes' start-up, so it is not counted
        pids = [process.pid for process in system.processes.values()]
        dagster_db = system.env["DICOM_PIPELINE_DAGSTER_DATABASE_URL"]
        events_before = _event_rows(dagster_db)
        cpu_before, pg_before = cpu_of_trees(pids), read_postgres(settings)
        started = time.monotonic()
        seed_small_studies(settings, studies, (), seed)
        received = 0
        deadline = time.monotonic() + 1800
        while received < studies and time.monotonic() < deadline:
            received += len(tap.read(expected=studies - received, timeout=10))
        seconds = time.monotonic() - started
        pg_sessions, pg_cpu = spent(pg_before, read_postgres(settings))
        cpu = cpu_of_trees(pids) - cpu_before
        events = _event_rows(dagster_db) - events_before
        tap.close()
        system.stop()
    label = f"{workers} worker(s) x 2 processes"
    per_study = max(received, 1)
    sessions = ", ".join(f"{name} {count / per_study:.2f}" for name, count in sorted(pg_sessions.items()))
    return [
        (
            f"burst, {label}: {studies} studies of 1 instance arriving at once, one run each",
            f"{received} events in {seconds:.0f} s",
        ),
        (f"burst rate, {label}", f"{received / seconds * 60:.0f} studies/min (target >= 200)"),
        (f"CPU seconds per study, {label} (daemon, code server, webserver, workers)", f"{cpu / per_study:.2f} s"),
        (f"PostgreSQL CPU seconds per study, {label}", f"{pg_cpu / per_study:.2f} s"),
        (f"CPU seconds per study, {label}, all processes with PostgreSQL", f"{(cpu + pg_cpu) / per_study:.2f} s"),
        (f"PostgreSQL sessions opened per study, {label}, by database", sessions or "none"),
        (f"Dagster event-log rows per study, {label} (runs, sensor ticks' runs, daemon)", f"{events / per_study:.1f}"),
    ]


def _event_rows(url: str) -> int:
    import psycopg2

    with psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM event_logs")
        row = cur.fetchone()
    return int(row[0]) if row else 0


def idle_cost(settings: Settings, seconds: float) -> list[tuple[str, str]]:
    """The whole system running with nothing arriving: what Dagster's bookkeeping costs
    PostgreSQL (sessions opened per second, share of a core)."""
    clear_change_log(settings)
    with tempfile.TemporaryDirectory() as tmp, running_system(settings, Path(tmp), sensor=True) as system:
        system.start_dagster()
        time.sleep(20)  # past start-up and the first sensor ticks
        before = read_postgres(settings)
        time.sleep(seconds)
        sessions, cpu = spent(before, read_postgres(settings))
    return [
        (
            f"idle system ({seconds:.0f} s, daemon, sensors, webserver, worker): PostgreSQL sessions opened per second",
            f"{sum(sessions.values()) / seconds:.2f} (target <= 1)",
        ),
        (f"idle system ({seconds:.0f} s): PostgreSQL CPU", f"{cpu / seconds * 100:.1f} % of a core (target < 2 %)"),
    ]


def idle_relay_runs(settings: Settings, minutes: float) -> list[tuple[str, str]]:
    """The whole system idle (sensors and daemon running, nothing arriving): how many relay
    runs does it create? The relay sensor launches one only when an event has waited."""
    import psycopg2

    clear_change_log(settings)
    with tempfile.TemporaryDirectory() as tmp, running_system(settings, Path(tmp), sensor=True) as system:
        system.start_dagster()
        time.sleep(minutes * 60)
        url = system.env["DICOM_PIPELINE_DAGSTER_DATABASE_URL"].replace("postgresql+psycopg2://", "postgresql://")
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT pipeline_name, count(*) FROM runs GROUP BY pipeline_name")
            runs = dict(cur.fetchall())
    relay = runs.get("outbox_relay", 0)
    return [
        (
            f"idle system for {minutes:.0f} min (daemon, sensors, worker): outbox_relay runs",
            f"{relay} (other runs: {sum(runs.values()) - relay}); the every-minute schedule made {minutes:.0f}",
        )
    ]
