"""Shared pieces of the benchmarks: the machine, seeding big studies, recording results."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dicom_pipeline_dev.seed.runner import describe_study, orthanc_client
from dicom_pipeline_dev.seed.send import dataset_bytes
from dicom_pipeline_dev.seed.synth import SeedPlan, StudySpec, build_instances, plan_studies

from dicom_pipeline.settings import Settings

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpus = os.cpu_count()
    with open("/proc/meminfo") as handle:
        mem_kb = int(handle.readline().split()[1])
    model = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{cpus} CPU ({model}), {mem_kb / 1024 / 1024:.0f} GiB RAM, {platform.system()} {platform.release()}"


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclass(frozen=True)
class SeededBigStudy:
    orthanc_id: str
    study_uid: str
    instances: int
    bytes_total: int


def seed_ct_study(
    settings: Settings, instances: int, seed: int, rows: int = 512, study_date: dt.date | None = None
) -> SeededBigStudy:
    """One CT series of `instances` images of rows x rows x 16 bit (512 -> ~512 KB each)."""
    plan = SeedPlan(
        studies=1,
        modalities=("CT",),
        series_per_study=1,
        instances_per_series=instances,
        rows=rows,
        columns=rows,
        seed=seed,
        dates=(study_date,) if study_date else (),
    )
    spec: StudySpec = plan_studies(plan)[0]
    total = 0
    with orthanc_client(settings, timeout=120) as client:
        for ds in build_instances(spec, seed):
            body = dataset_bytes(ds)
            total += len(body)
            client.post("/instances", data=body).raise_for_status()
        seeded = describe_study(client, spec)
    return SeededBigStudy(seeded.orthanc_id, spec.study_uid, instances, total)


def record(title: str, rows: list[tuple[str, str]], notes: list[str]) -> str:
    """Append one run's table to RESULTS.md and return it."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {title} - {stamp}",
        "",
        f"- machine: {machine()}",
        f"- commit: {commit()}",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += [""] + [f"- {note}" for note in notes] + [""]
    text = "\n".join(lines)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `make bench` / `make bench-quick`; newest last.\n\n")
    with RESULTS.open("a") as handle:
        handle.write(text + "\n")
    return text
