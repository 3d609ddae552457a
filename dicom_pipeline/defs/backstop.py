"""Run-failure backstop: a dead letter for runs that failed where no hook could write one.

The failure hook does not fire when the worker is killed (SIGKILL, OOM), when a run is
terminated, or when a run fails before any step starts.
"""

import dagster as dg

from dicom_pipeline.db.dead_letters import DeadLetterInput, has_dead_letter_for_run
from dicom_pipeline.db.engine import transaction
from dicom_pipeline.defs import tags
from dicom_pipeline.defs.batch import ingest_batch
from dicom_pipeline.defs.jobs import ingest_study
from dicom_pipeline.domain.identifiers import correlation_id_or_new
from dicom_pipeline.ingestion.dead_letter import write_dead_letter
from dicom_pipeline.ingestion.requests import request_failed
from dicom_pipeline.runtime import get_runtime


@dg.run_failure_sensor(
    monitored_jobs=[ingest_study, ingest_batch],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
    description="Dead-letters failed study runs that have no dead letter yet.",
)
def dead_letter_backstop(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    runtime = get_runtime()
    with transaction(runtime.engine) as session:
        if has_dead_letter_for_run(session, run.run_id):
            return
    message = context.failure_event.message or "run failed before any step could report"
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
            error_type="RunFailure",
            error_message=message,
            transient=True,
            attempts=1,
        ),
    )
    # Only once the dead letter is durable: a request that reads "failed" has its letter.
    request_failed(runtime, run.tags.get(tags.REQUEST_ID), message)
