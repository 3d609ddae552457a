"""Reconciliation job: ingest every Orthanc study missing from the database or changed since.

The backstop for everything the webhook and the change feed can lose. A periodic pass
looks at what changed since the last one; a full scan runs on demand or when the change
log cannot be trusted (ingestion/reconcile.py). What it finds it ingests in this one run,
a few studies at a time.
"""

import dagster as dg
from pydantic import Field

from dicom_pipeline.defs.batch import ingest_in_this_run
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.ingestion.reconcile import plan_reconciliation


class ReconcileConfig(dg.Config):
    full: bool = Field(default=False, description="Scan every study in Orthanc, not only what changed.")


@dg.op(tags={"kind": "orthanc"})
def reconcile_orthanc(
    context: dg.OpExecutionContext, config: ReconcileConfig, ingestion: IngestionResource
) -> dg.Output[dict[str, int]]:
    runtime = ingestion.runtime()
    look = plan_reconciliation(runtime, full=config.full)
    stale = look.stale
    context.log.info(
        f"reconciliation ({look.why}): {look.changes_read} change(s) read, {look.studies_checked} "
        f"study(ies) checked, {len(stale)} to ingest"
    )
    report = ingest_in_this_run(
        context,
        runtime,
        [s.orthanc_id for s in stale],
        trigger="reconcile",
        concurrency=runtime.settings.download_concurrency,
    )
    counts = {"checked": look.studies_checked, "found": len(stale), **report.as_dict()}
    return dg.Output(counts, metadata={**counts, "mode": look.mode})


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
