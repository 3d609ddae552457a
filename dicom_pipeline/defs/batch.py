"""Many studies inside one run: backfill partitions and reconciliation.

Study for study, the work is the one use case that ingest_study runs (versioning, outbox,
dead letters), a few at a time in one process.
"""

import dagster as dg

from dicom_pipeline.ingestion.batch import BatchReport, ingest_studies
from dicom_pipeline.runtime import Runtime


def ingest_in_this_run(
    context: dg.OpExecutionContext, runtime: Runtime, orthanc_ids: list[str], *, trigger: str, concurrency: int
) -> BatchReport:
    """Ingest the studies inside the current run (reconcile, backfill), logging each failure."""
    report = ingest_studies(runtime, orthanc_ids, trigger=trigger, run_id=context.run_id, concurrency=concurrency)
    for failure in report.failures:
        context.log.warning(f"study {failure.orthanc_id} dead-lettered (id {failure.dead_letter_id}): {failure.error}")
    return report
