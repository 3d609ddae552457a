"""The one dead-letter writer: a row and its outbox event, then an attempt to send it at once.

Used by the use case when a study gives up, and by the run-failure backstop and the
dead-run reaper for runs that died before the use case could write one.
"""

from __future__ import annotations

import datetime as dt
import logging

from dicom_pipeline.db.dead_letters import DeadLetterInput, record_dead_letter
from dicom_pipeline.db.engine import transaction
from dicom_pipeline.ingestion.retry import StepFailed, is_transient
from dicom_pipeline.kafka.outbox import publish_pending_events
from dicom_pipeline.runtime import Runtime

log = logging.getLogger(__name__)


def dead_letter_for_failure(
    failure: StepFailed,
    *,
    correlation_id: str,
    trigger: str | None,
    orthanc_id: str | None,
    run_id: str | None,
    study_uid: str | None,
) -> DeadLetterInput:
    cause = failure.cause
    return DeadLetterInput(
        correlation_id=correlation_id,
        trigger=trigger,
        study_instance_uid=getattr(cause, "study_uid", None) or study_uid,
        orthanc_id=orthanc_id,
        instance=getattr(cause, "instance", None),
        run_id=run_id,
        failed_op=failure.step,
        error_type=type(cause).__name__,
        error_message=str(cause) or type(cause).__name__,
        transient=is_transient(cause),
        attempts=failure.attempts,
    )


def write_dead_letter(runtime: Runtime, letter: DeadLetterInput, *, ingested_since: dt.datetime | None = None) -> int:
    with transaction(runtime.engine) as session:
        dead_letter_id, event_id = record_dead_letter(
            session, letter, runtime.settings.kafka_dlq_topic, ingested_since=ingested_since
        )
    log.warning(
        "dead letter recorded",
        extra={
            "dead_letter_id": dead_letter_id,
            "failed_op": letter.failed_op,
            "error_type": letter.error_type,
            "study_uid": letter.study_instance_uid,
            "orthanc_id": letter.orthanc_id,
            "run_id": letter.run_id,
            "correlation_id": letter.correlation_id,
        },
    )
    try:
        publish_pending_events(runtime.engine, runtime.producer, event_ids=[event_id], raise_on_failure=False)
    except Exception:
        log.exception("dead letter %s stays in the outbox for the relay", dead_letter_id)
    return dead_letter_id
