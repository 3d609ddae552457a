"""Large-study throughput against curl on the same files, and peak memory by study size."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import dagster as dg
from dicom_pipeline_dev.seed.runner import orthanc_client

from bench.archive import backfill_job
from bench.common import SeededBigStudy, seed_ct_study
from dicom_pipeline.settings import Settings
from tests.e2e.system import System, running_system, wait_for
from tests.helpers import clear_change_log


def curl_download(settings: Settings, study: SeededBigStudy) -> float:
    """Seconds for curl (one process, one reused connection) to fetch every file to disk."""
    with orthanc_client(settings) as client:
        ids = [item["ID"] for item in client.get(f"/studies/{study.orthanc_id}/instances").json()]
    folder = Path(tempfile.mkdtemp(prefix="bench-curl-", dir=settings.staging_dir.resolve().parent))
    config = folder / "curl.cfg"
    lines = [f'user = "{settings.orthanc_username}:{settings.orthanc_password.get_secret_value()}"']
    for orthanc_id in ids:
        lines += [
            f'url = "{settings.orthanc_url}/instances/{orthanc_id}/file"',
            f'output = "{folder}/{orthanc_id}.dcm"',
        ]
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    try:
        started = time.perf_counter()
        subprocess.run(["curl", "-s", "-f", "-K", str(config)], check=True)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def pipeline_ingest(study: SeededBigStudy) -> dict[str, float]:
    """Ingest in a fresh process; returns its seconds and peak resident memory."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.ingest_one", study.orthanc_id], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def throughput(settings: Settings, instances: int, seed: int) -> tuple[list[tuple[str, str]], dict[str, float]]:
    study = seed_ct_study(settings, instances, seed)
    megabytes = study.bytes_total / 1e6
    curl_before = curl_download(settings, study)
    pipeline = pipeline_ingest(study)
    curl_after = curl_download(settings, study)
    curl_best = min(curl_before, curl_after)
    curl_rate = megabytes / curl_best
    pipeline_rate = megabytes / pipeline["seconds"]
    rows = [
        ("large study", f"{instances} CT instances, {megabytes:.0f} MB"),
        ("curl download (best of 2)", f"{curl_best:.2f} s = {curl_rate:.0f} MB/s"),
        (
            "ingest_study (extract, storage, PostgreSQL, Kafka)",
            f"{pipeline['seconds']:.2f} s = {pipeline_rate:.0f} MB/s",
        ),
        ("pipeline / curl", f"{pipeline_rate / curl_rate:.2f} (target >= 0.5)"),
        (
            f"peak RSS ingesting {megabytes:.0f} MB",
            f"{pipeline['peak_rss_mb']:.0f} MB (each reader {pipeline['readers_peak_rss_mb']:.0f} MB, "
            f"all processes {pipeline['total_peak_rss_mb']:.0f} MB)",
        ),
    ]
    return rows, {"megabytes": megabytes, "peak_rss_mb": pipeline["peak_rss_mb"], "ratio": pipeline_rate / curl_rate}


def memory(settings: Settings, sizes: list[int], seed: int) -> list[tuple[str, str]]:
    rows = []
    peaks = []
    for index, instances in enumerate(sizes):
        study = seed_ct_study(settings, instances, seed + 1000 + index)
        result = pipeline_ingest(study)
        peaks.append(result["peak_rss_mb"])
        rows.append(
            (
                f"peak RSS ingesting {study.bytes_total / 1e6:.0f} MB ({instances} instances)",
                f"{result['peak_rss_mb']:.0f} MB in {result['seconds']:.1f} s "
                f"(each reader {result['readers_peak_rss_mb']:.0f} MB)",
            )
        )
    rows.append(("peak RSS growth, largest vs smallest", f"x{peaks[-1] / peaks[0]:.2f} (target: flat, < 300 MB)"))
    return rows


RUN_REPEATS = 3


def run_throughput(settings: Settings, instances: int, seed: int) -> list[tuple[str, str]]:
    """The study's own Dagster run (RUN_START -> RUN_SUCCESS) in a warm Celery worker, as in
    `make dev`: Orthanc's Lua script notices the stable study and calls the webhook. One
    worker process, warmed by a first study big enough to start its instance readers."""
    clear_change_log(settings)
    with tempfile.TemporaryDirectory() as tmp, running_system(settings, Path(tmp), sensor=False) as system:
        system.start_worker("w1", concurrency=1)
        system.start_dagster()
        system.start_webhook()
        warm = seed_ct_study(settings, 20, seed + 7919, rows=64)  # a seed no measured study uses
        _succeeded(system, warm, timeout=180)
        runs, curls = [], []
        for index in range(RUN_REPEATS):
            study = seed_ct_study(settings, instances, seed + index)
            run = _succeeded(system, study, timeout=600)[0]
            runs.append(float(run["endTime"]) - float(run["startTime"]))  # type: ignore[arg-type]
            curls.append(min(curl_download(settings, study), curl_download(settings, study)))
    megabytes = study.bytes_total / 1e6
    seconds, curl_best = statistics.median(runs), statistics.median(curls)
    curl_rate, run_rate = megabytes / curl_best, megabytes / seconds
    return [
        (
            f"curl download, {instances} instances (median of {RUN_REPEATS} studies, best of 2 each)",
            f"{curl_best:.2f} s = {curl_rate:.0f} MB/s",
        ),
        (
            f"ingest_study run in a warm worker, RUN_START -> RUN_SUCCESS (median of {RUN_REPEATS})",
            f"{seconds:.2f} s = {run_rate:.0f} MB/s (runs: {', '.join(f'{r:.2f}' for r in runs)} s)",
        ),
        ("run / curl", f"{run_rate / curl_rate:.2f} (target >= 0.5)"),
    ]


def backfill_throughput(settings: Settings, studies: int, instances: int, seed: int) -> list[tuple[str, str]]:
    """A Study Date partition holding `studies` large studies, ingested one after another
    (BACKFILL_CONCURRENCY=1) and side by side (4), on studies of the same size; both after
    a warm-up partition, so the instance readers are up."""
    # 2001-2009: inside the default partitions (BACKFILL_START_DATE 2000-01-01), apart from
    # the dates the small-study backfill figure uses.
    base = dt.date(2001, 1, 1) + dt.timedelta(days=(seed % 1000) * 3)
    rows: list[tuple[str, str]] = []
    seconds: dict[int, float] = {}
    megabytes = 0.0
    last: SeededBigStudy | None = None
    for offset, concurrency in enumerate((1, 4)):
        day = base + dt.timedelta(days=offset + 1)
        configured = settings.model_copy(update={"backfill_concurrency": concurrency})
        job = backfill_job(configured)
        instance = dg.DagsterInstance.ephemeral()
        seed_ct_study(settings, 20, seed + 50 + offset, rows=64, study_date=base)
        job.execute_in_process(partition_key=base.isoformat(), instance=instance)  # warm-up
        seeded = [
            seed_ct_study(settings, instances, seed + 100 * (offset + 1) + k, study_date=day) for k in range(studies)
        ]
        megabytes = sum(s.bytes_total for s in seeded) / 1e6
        started = time.perf_counter()
        result = job.execute_in_process(partition_key=day.isoformat(), instance=instance)
        seconds[concurrency] = time.perf_counter() - started
        counts = result.output_for_node("ingest_study_date")
        if counts.get("created") != studies:
            raise RuntimeError(f"backfill of {day} created {counts}, expected {studies}")
        last = seeded[-1]
    assert last is not None
    curl_rate = last.bytes_total / 1e6 / min(curl_download(settings, last), curl_download(settings, last))
    for concurrency, label in ((1, "one after another"), (4, "side by side (4)")):
        rate = megabytes / seconds[concurrency]
        rows.append(
            (
                f"backfill partition of {studies} x {instances} instances ({megabytes:.0f} MB), {label}",
                f"{seconds[concurrency]:.2f} s = {rate:.0f} MB/s = {rate / curl_rate:.2f} x curl",
            )
        )
    rows.append(("side by side / one after another (time)", f"{seconds[4] / seconds[1]:.2f} (target <= 1)"))
    return rows


def _succeeded(system: System, study: SeededBigStudy, timeout: float) -> list[dict[str, object]]:
    """The study's successful run(s), once there is one (Lua -> webhook -> daemon -> worker)."""
    runs = wait_for(
        lambda: [run for run in system.study_runs(study.orthanc_id) if run["status"] == "SUCCESS"],
        timeout,
        f"a successful run of study {study.orthanc_id}",
        interval=1,
    )
    return cast(list[dict[str, object]], runs)
