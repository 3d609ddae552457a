"""Bursts: many studies in one run, for when the change feed brings more than a few at once.

A run costs several CPU-seconds before it does any work (a new process, Dagster's event
log); ingesting a burst of hundreds of small studies as one run per study spends most of
the machine on that. Study for study, the work is the same as ingest_study's (versioning,
outbox, dead letters), done a few at a time in one process.
"""

import dagster as dg
from pydantic import Field

from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.ingestion.batch import BatchReport, ingest_studies
from dicom_pipeline.runtime import Runtime


def ingest_in_this_run(
    context: dg.OpExecutionContext, runtime: Runtime, orthanc_ids: list[str], *, trigger: str, concurrency: int
) -> BatchReport:
    """Ingest the studies inside the current run (reconcile, backfill, bursts), logging each failure."""
    report = ingest_studies(runtime, orthanc_ids, trigger=trigger, run_id=context.run_id, concurrency=concurrency)
    for failure in report.failures:
        context.log.warning(f"study {failure.orthanc_id} dead-lettered (id {failure.dead_letter_id}): {failure.error}")
    return report


class IngestBatchConfig(dg.Config):
    orthanc_study_ids: list[str] = Field(description="Orthanc study ids to ingest in this run.")
    trigger: str = Field(default="sensor-batch")


@dg.op(tags={"kind": "orthanc"})
def ingest_study_batch(
    context: dg.OpExecutionContext, config: IngestBatchConfig, ingestion: IngestionResource
) -> dg.Output[dict[str, int]]:
    runtime = ingestion.runtime()
    report = ingest_in_this_run(
        context,
        runtime,
        config.orthanc_study_ids,
        trigger=config.trigger,
        concurrency=runtime.settings.backfill_concurrency,
    )
    counts = {"requested": len(config.orthanc_study_ids), **report.as_dict()}
    return dg.Output(counts, metadata=counts)


@dg.job(executor_def=dg.in_process_executor, description="Ingest a burst of studies in one run.")
def ingest_batch() -> None:
    ingest_study_batch()
