"""Sensor tick cost against archive size, and the backfill rate, with many small studies."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import requests
from dicom_pipeline_dev.http import ServiceSession
from dicom_pipeline_dev.seed.runner import orthanc_client
from dicom_pipeline_dev.seed.send import dataset_bytes
from dicom_pipeline_dev.seed.synth import SeedPlan, build_instances, plan_studies

from dicom_pipeline.definitions import build_definitions
from dicom_pipeline.defs.change_feed import evaluate_change_feed
from dicom_pipeline.ingestion.change_feed import FeedCursor
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings


def seed_small_studies(settings: Settings, count: int, dates: tuple[dt.date, ...], seed: int) -> None:
    """`count` one-instance 8x8 studies, uploaded by four threads."""
    plan = SeedPlan(studies=count, modalities=("CR",), rows=8, columns=8, dates=dates, seed=seed)
    bodies = (dataset_bytes(next(build_instances(spec, seed))) for spec in plan_studies(plan))
    with orthanc_client(settings) as client, ThreadPoolExecutor(4) as pool:
        for response in pool.map(lambda body: _post_instance(client, body), bodies):
            response.raise_for_status()


def _post_instance(client: ServiceSession, body: bytes) -> requests.Response:
    # Orthanc sometimes closes a kept-alive connection under load; one retry is enough.
    for attempt in range(3):
        try:
            return client.post("/instances", data=body)
        except requests.ConnectionError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def study_count(settings: Settings) -> int:
    with orthanc_client(settings) as client:
        return int(client.get("/statistics").json()["CountStudies"])


def idle_tick_seconds(repeats: int = 7) -> float:
    """Median duration of a change-feed tick when nothing is new."""
    with get_runtime().orthanc() as orthanc:
        cursor = FeedCursor(int(orthanc.last_change()["Last"])).dump()
    timings = []
    runtime = get_runtime()
    with dg.instance_for_test() as instance:
        for _ in range(repeats):
            context = dg.build_sensor_context(instance=instance, cursor=cursor)
            started = time.perf_counter()
            evaluate_change_feed(context, runtime)
            timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def sensor_tick(settings: Settings, target_studies: int, seed: int) -> list[tuple[str, str]]:
    before_count = study_count(settings)
    before = idle_tick_seconds()
    missing = max(target_studies - before_count, 0)
    if missing:
        seed_small_studies(settings, missing, (dt.date(1970, 1, 1),), seed)
    after_count = study_count(settings)
    after = idle_tick_seconds()
    return [
        (f"idle sensor tick, {before_count} studies in Orthanc", f"{before * 1000:.1f} ms"),
        (f"idle sensor tick, {after_count} studies in Orthanc", f"{after * 1000:.1f} ms (target < 1 s)"),
        ("tick ratio large/small archive", f"{after / before:.2f} (independent of size when ~1)"),
    ]


def backfill_rate(settings: Settings, studies: int, seed: int) -> list[tuple[str, str]]:
    base = dt.date(2015, 1, 1) + dt.timedelta(days=seed % 1500)
    dates = tuple(base + dt.timedelta(days=i) for i in range(4))
    seed_small_studies(settings, studies, dates, seed)
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    for day in dates:
        result = backfill_job(settings).execute_in_process(partition_key=day.isoformat(), instance=instance)
        counts.update(result.output_for_node("ingest_study_date"))
    seconds = time.perf_counter() - started
    created = counts["created"]
    started = time.perf_counter()
    for day in dates:
        backfill_job(settings).execute_in_process(partition_key=day.isoformat(), instance=instance)
    rerun = time.perf_counter() - started
    return [
        (
            f"backfill of {studies} small studies on {len(dates)} dates",
            f"{seconds:.1f} s; " + ", ".join(f"{key} {counts[key]}" for key in sorted(counts)),
        ),
        ("backfill rate", f"{created / seconds * 60:.0f} studies/min (target >= 300)"),
        ("backfill re-run (all unchanged)", f"{rerun:.1f} s = {studies / rerun * 60:.0f} studies/min"),
    ]


def backfill_job(settings: Settings) -> dg.JobDefinition:
    return build_definitions(settings, resources_from_env=False).resolve_job_def("backfill_by_study_date")


def reconcile_cost(settings: Settings, sizes: list[int], seed: int) -> list[tuple[str, str]]:
    """A periodic reconciliation pass with nothing new, against a full scan, as Orthanc grows."""
    from dicom_pipeline.ingestion.reconcile import plan_reconciliation

    runtime = get_runtime()
    rows: list[tuple[str, str]] = []
    for size in sizes:
        missing = max(size - study_count(settings), 0)
        if missing:
            seed_small_studies(settings, missing, (dt.date(1970, 1, 2),), seed + size)
        count = study_count(settings)
        time.sleep(settings.orthanc_stable_age + 1)
        started = time.perf_counter()
        full = plan_reconciliation(runtime, full=True)
        full_seconds = time.perf_counter() - started
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            quiet = plan_reconciliation(runtime)
            timings.append(time.perf_counter() - started)
        rows += [
            (
                f"reconcile, full scan, {count} studies in Orthanc",
                f"{full_seconds:.2f} s ({full.studies_checked} checked)",
            ),
            (
                f"reconcile, periodic pass with nothing new, {count} studies in Orthanc",
                f"{statistics.median(timings) * 1000:.1f} ms ({quiet.studies_checked} checked, mode {quiet.mode})",
            ),
        ]
    return rows
