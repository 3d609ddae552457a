"""Backfill by Study Date: one run per day finds that day's studies in Orthanc and ingests
them in the same process, a few at a time, through the same steps as ingest_study."""

import datetime as dt

import dagster as dg

from dicom_pipeline.defs.batch import ingest_in_this_run
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.defs.run_log import RUN_LOGGERS


@dg.op(tags={"kind": "orthanc"})
def ingest_study_date(context: dg.OpExecutionContext, ingestion: IngestionResource) -> dg.Output[dict[str, int]]:
    """Find the partition day's studies (/tools/find on StudyDate) and ingest each."""
    runtime = ingestion.runtime()
    day = dt.date.fromisoformat(context.partition_key)
    with runtime.orthanc() as orthanc:
        orthanc_ids = orthanc.find_studies({"StudyDate": day.strftime("%Y%m%d")})
    context.log.info(f"{len(orthanc_ids)} study(ies) in Orthanc with StudyDate {day.isoformat()}")
    report = ingest_in_this_run(
        context, runtime, orthanc_ids, trigger="backfill", concurrency=runtime.settings.backfill_concurrency
    )
    counts = {"found": len(orthanc_ids), **report.as_dict()}
    return dg.Output(counts, metadata={**counts, "study_date": day.isoformat()})


def build_backfill_job(*, start_date: str) -> dg.JobDefinition:
    """Daily Study Date partitions from `start_date` (YYYY-MM-DD) to today."""

    @dg.job(
        name="backfill_by_study_date",
        partitions_def=dg.DailyPartitionsDefinition(start_date=start_date, end_offset=1, fmt="%Y-%m-%d"),
        executor_def=dg.in_process_executor,
        config=RUN_LOGGERS,
        # Live study runs come first in the run queue and, on the Celery workers, partition
        # runs take their own queue ("backfill"), so a long backfill never occupies the
        # processes live studies need.
        tags={"dagster/priority": "-1", "dicom/trigger": "backfill", "dagster-celery/queue": "backfill"},
        description="Ingest every Orthanc study of one Study Date (use Partitions -> Launch backfill).",
    )
    def backfill_by_study_date() -> None:
        ingest_study_date()

    return backfill_by_study_date
