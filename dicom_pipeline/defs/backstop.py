"""Run-failure backstop: a dead letter for runs that failed where no hook could write one.

The failure hook does not fire when the worker is killed (SIGKILL, OOM), when a run is
terminated, or when a run fails before any step starts. A killed worker's run is marked
failed by the Dagster code server that launched it or, when that died too, by the
dead_run_reaper; either way this sensor then sees the failure.
"""

import datetime as dt
import shutil

import dagster as dg
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import should_retry

from dicom_pipeline.db.dead_letters import DeadLetterInput, has_dead_letter_for_run
from dicom_pipeline.db.engine import transaction
from dicom_pipeline.defs import tags
from dicom_pipeline.defs.jobs import ingest_study
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.domain.identifiers import correlation_id_or_new
from dicom_pipeline.ingestion.dead_letter import write_dead_letter
from dicom_pipeline.ingestion.requests import request_failed
from dicom_pipeline.runtime import Runtime

# The jobs whose runs ingest studies: a failed run of one of them leaves a dead letter.
STUDY_JOBS = (ingest_study,)


@dg.run_failure_sensor(
    monitored_jobs=list(STUDY_JOBS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
    description="Dead-letters failed study runs that have no dead letter yet.",
)
def dead_letter_backstop(context: dg.RunFailureSensorContext, ingestion: IngestionResource) -> None:
    message = context.failure_event.message or "run failed before any step could report"
    run = context.dagster_run
    record = context.instance.get_run_record_by_id(run.run_id)
    started_at = run_started_at(record) if record else None
    settle_failed_run(ingestion.runtime(), context.instance, run, started_at, "RunFailure", message)


def run_started_at(record: dg.RunRecord) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(record.start_time, dt.UTC) if record.start_time else None


def settle_failed_run(
    runtime: Runtime,
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    started_at: dt.datetime | None,
    error_type: str,
    message: str,
) -> None:
    """After a run failed: its scratch folder removed, its dead letter written unless it has
    one or Dagster's run retry will try again, then its webhook request (if any) marked failed.

    A retried attempt gets no letter: the retry's outcome settles the study (its own
    failure, if it fails, gets the letter), and a letter now would be false whenever it
    succeeds.

    Written after the fact, so a retry of the run may already have ingested the study:
    then the letter is recorded resolved (see record_dead_letter).
    """
    # A worker that was killed could not remove its partial downloads itself.
    shutil.rmtree(runtime.run_staging(run.run_id), ignore_errors=True)
    if run.job_name not in {job.name for job in STUDY_JOBS}:
        return
    if should_retry(run, instance):
        return
    with transaction(runtime.engine) as session:
        if has_dead_letter_for_run(session, run.run_id):
            return
    write_dead_letter(
        runtime,
        DeadLetterInput(
            correlation_id=correlation_id_or_new(run.tags.get(tags.CORRELATION_ID)),
            trigger=run.tags.get(tags.TRIGGER),
            study_instance_uid=run.tags.get(tags.STUDY_UID),
            orthanc_id=run.tags.get(tags.ORTHANC_ID),
            instance=None,
            run_id=run.run_id,
            failed_op="run",
            error_type=error_type,
            error_message=message,
            transient=True,
            attempts=1,
        ),
        ingested_since=started_at,
    )
    # Only once the dead letter is durable: a request that reads "failed" has its letter.
    request_failed(runtime, run.tags.get(tags.REQUEST_ID), message)
