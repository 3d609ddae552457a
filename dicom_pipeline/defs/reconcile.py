"""Reconciliation job: ingest every Orthanc study missing from the database or changed since.

The backstop for everything the webhook and the change feed can lose. It pages through
Orthanc and ingests what it finds in this one run, many studies at a time, instead of
launching one run per study.
"""

import dagster as dg

from dicom_pipeline.defs.batch import ingest_in_this_run
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.ingestion.reconcile import find_stale_studies


@dg.op(tags={"kind": "orthanc"})
def reconcile_orthanc(context: dg.OpExecutionContext, ingestion: IngestionResource) -> dg.Output[dict[str, int]]:
    runtime = ingestion.runtime()
    stale = list(find_stale_studies(runtime))
    context.log.info(f"reconciliation found {len(stale)} study(ies) to ingest")
    report = ingest_in_this_run(
        context,
        runtime,
        [s.orthanc_id for s in stale],
        trigger="reconcile",
        concurrency=runtime.settings.download_concurrency,
    )
    counts = {"found": len(stale), **report.as_dict()}
    return dg.Output(counts, metadata=counts)


@dg.job(executor_def=dg.in_process_executor, description="Ingest Orthanc studies missing from or stale in the DB.")
def reconcile() -> None:
    reconcile_orthanc()


def build_reconcile_schedule(*, running: bool) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="reconcile_schedule",
        job=reconcile,
        cron_schedule="*/15 * * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description="Every 15 minutes: catch what the webhook and the change feed missed.",
    )
