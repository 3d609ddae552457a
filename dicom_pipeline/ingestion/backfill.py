"""`dicom-pipeline backfill`: the Study Date partitions of a range, run in this process."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable

from dicom_pipeline.defs.backfill import backfill_by_study_date
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.ingestion.run import dagster_instance


def run_backfill(first: dt.date, last: dt.date, progress: Callable[[str], None]) -> dict[str, int]:
    instance = dagster_instance()
    totals: Counter[str] = Counter()
    days = (last - first).days + 1
    for index in range(days):
        day = (first + dt.timedelta(days=index)).isoformat()
        result = backfill_by_study_date.execute_in_process(
            partition_key=day,
            resources={"ingestion": IngestionResource()},
            instance=instance,
            raise_on_error=False,
            tags={"dicom/trigger": "backfill-cli"},
        )
        if result.success:
            counts: dict[str, int] = result.output_for_node("ingest_study_date")
            totals.update(counts)
            summary = ", ".join(f"{k} {v}" for k, v in counts.items())
            progress(f"[{index + 1}/{days}] {day}: {summary}")
        else:
            totals["failed_partitions"] += 1
            progress(f"[{index + 1}/{days}] {day}: partition run {result.run_id} failed")
    keys = ("found", "created", "updated", "unchanged", "superseded", "failed", "failed_partitions")
    return {key: totals.get(key, 0) for key in keys}
