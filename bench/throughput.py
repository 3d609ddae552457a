"""Large-study throughput against curl on the same files, and peak memory by study size."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dicom_pipeline_dev.seed.runner import orthanc_client

from bench.common import SeededBigStudy, seed_ct_study
from dicom_pipeline.settings import Settings


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
        (f"peak RSS ingesting {megabytes:.0f} MB", f"{pipeline['peak_rss_mb']:.0f} MB"),
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
                f"{result['peak_rss_mb']:.0f} MB in {result['seconds']:.1f} s",
            )
        )
    rows.append(("peak RSS growth, largest vs smallest", f"x{peaks[-1] / peaks[0]:.2f} (target: flat, < 300 MB)"))
    return rows
