"""The use case "ingest a study": extract, store, persist, publish; written once.

Every caller runs exactly this: the `ingest_study` Dagster run, backfill partitions and
reconciliation (many studies in one run), and the CLI. Retries (transient errors only)
come from one RetryPolicy; a study that cannot be ingested gets one dead letter, written
by `write_dead_letter`, and whatever it staged is removed.

A study Orthanc no longer holds is not a failure when the database knows it: its deletion
is recorded (a version with an event, `record_study_deletion`), whatever the trigger, so
every path that reads Orthanc keeps the database matching it.

Publishing is not a step that can fail the study: the version and its event are committed
together (the outbox) before anything is sent, so an event Kafka did not take now waits
in the outbox for the relay. The study is ingested either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.ingestion_requests import DELETION_TRIGGER, deletion_noticed
from dicom_pipeline.db.repository import VersionOutcome
from dicom_pipeline.domain.metadata import ExtractedStudy
from dicom_pipeline.errors import OrthancNotFound, PipelineError, StudyChangedWhileReading
from dicom_pipeline.ingestion.dead_letter import dead_letter_for_failure, write_dead_letter
from dicom_pipeline.ingestion.extract import extract_study
from dicom_pipeline.ingestion.persist import discard_staging, persist_study_version, record_deletion
from dicom_pipeline.ingestion.requests import request_absent, request_failed, request_succeeded
from dicom_pipeline.ingestion.retry import DEFAULT_POLICY, RetryPolicy, StepFailed
from dicom_pipeline.ingestion.store import store_raw
from dicom_pipeline.kafka.outbox import publish_pending_events
from dicom_pipeline.logs import bound_correlation_id
from dicom_pipeline.runtime import Runtime

log = logging.getLogger(__name__)

# Step names are what dead letters record as failed_op (operators filter on them).
EXTRACT, STORE, PERSIST = "extract_study", "store_raw", "persist_metadata"
ABSENT = "absent"
DELETION_NOTICE_GRACE_SECONDS = 2.0

StageListener = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class IngestStudy:
    """The command: which study, who asked, and where the answer goes."""

    orthanc_id: str
    trigger: str
    correlation_id: str
    run_id: str | None = None
    request_id: str | None = None  # a webhook request to close when done


@dataclass(frozen=True)
class StudyResult:
    orthanc_id: str
    correlation_id: str
    outcome: VersionOutcome | None
    events_published: int = 0
    error: str | None = None
    dead_letter_id: int | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def status(self) -> str:
        if self.outcome is not None:
            return self.outcome.status
        # A deletion notice for a study the database never held: nothing to do.
        return "failed" if self.failed else ABSENT

    def summary(self) -> dict[str, Any]:
        base: dict[str, Any] = {"orthanc_id": self.orthanc_id, "correlation_id": self.correlation_id}
        if self.outcome is None and not self.failed:
            return {**base, "status": ABSENT}
        if self.outcome is None:
            return {**base, "status": "failed", "error": self.error, "dead_letter_id": self.dead_letter_id}
        return {**base, **self.outcome.as_dict(), "events_published": self.events_published}


def _ignore(stage: str, facts: Mapping[str, Any]) -> None:
    return None


def ingest_study(
    runtime: Runtime,
    command: IngestStudy,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    on_stage: StageListener = _ignore,
) -> StudyResult:
    """Ingest one study; never raises for the study's own failures (they become dead letters).

    `on_stage` hears ("extracted" | "stored" | "persisted" | "published", facts) as each
    step completes, for callers that show progress (Dagster's lineage materializations).
    """
    with bound_correlation_id(command.correlation_id):
        extracted: ExtractedStudy | None = None
        vanished = False  # Orthanc held the study when this run began reading it

        def extract() -> ExtractedStudy:
            nonlocal vanished
            try:
                return extract_study(runtime, command.orthanc_id, command.run_id)
            except StudyChangedWhileReading:
                vanished = True
                raise

        try:
            extracted = policy.call(EXTRACT, extract)
            study = extracted
            on_stage(
                "extracted",
                {
                    "study_uid": study.study_instance_uid,
                    "downloaded": len(study.new_records),
                    "reused": len(study.instances) - len(study.new_records),
                },
            )
            stored = policy.call(STORE, lambda: store_raw(runtime, study))
            on_stage("stored", {"study_uid": study.study_instance_uid, **stored.__dict__})
            outcome = policy.call(PERSIST, lambda: _persist(runtime, command, study))
            on_stage("persisted", outcome.as_dict())
        except StepFailed as failure:
            if isinstance(failure.cause, OrthancNotFound) and extracted is None:
                gone = _study_gone(runtime, command, policy, on_stage, vanished=vanished)
                if gone is not None:
                    return gone
            return _give_up(runtime, command, failure, extracted)

        published = _publish(runtime, outcome)
        on_stage("published", {**outcome.as_dict(), "events_published": published})
        request_succeeded(runtime, command.request_id, outcome)
        return StudyResult(command.orthanc_id, command.correlation_id, outcome, events_published=published)


def _study_gone(
    runtime: Runtime, command: IngestStudy, policy: RetryPolicy, on_stage: StageListener, *, vanished: bool
) -> StudyResult | None:
    """Orthanc has no such study: record its deletion if the database holds it.

    For a study never ingested there is nothing to do when it was deleted: a deletion
    notice asked, this run saw it go while reading (`vanished`), or Orthanc's deletion
    notice arrived before this run read it. Otherwise None, and the caller dead-letters it
    (an id Orthanc never had is the caller's mistake).
    """
    context = runtime.event_context(
        run_id=command.run_id, correlation_id=command.correlation_id, trigger=command.trigger
    )
    try:
        outcome = policy.call(PERSIST, lambda: record_deletion(runtime, command.orthanc_id, context))
    except StepFailed:
        log.exception("could not record the deletion", extra={"orthanc_id": command.orthanc_id})
        return None
    if outcome is None:
        if command.trigger != DELETION_TRIGGER and not vanished and not _deletion_noticed(runtime, command):
            return None
        log.info("deleted study was never ingested: nothing to do", extra={"orthanc_id": command.orthanc_id})
        request_absent(runtime, command.request_id)
        return StudyResult(command.orthanc_id, command.correlation_id, None)
    log.info(
        "study deleted in Orthanc",
        extra={
            "study_uid": outcome.study_instance_uid,
            "version": outcome.version,
            "new_event": bool(outcome.event_id),
        },
    )
    on_stage("persisted", outcome.as_dict())
    published = _publish(runtime, outcome)
    on_stage("published", {**outcome.as_dict(), "events_published": published})
    request_succeeded(runtime, command.request_id, outcome)
    return StudyResult(command.orthanc_id, command.correlation_id, outcome, events_published=published)


def _deletion_noticed(runtime: Runtime, command: IngestStudy) -> bool:
    """Whether Orthanc's deletion notice for this study has reached the webhook. Orthanc
    posts it right after the deletion, so a run reading the study within that moment waits
    for it once, rather than dead-letter a study that was merely deleted."""
    for attempt in range(2):
        if attempt:
            time.sleep(DELETION_NOTICE_GRACE_SECONDS)
        with transaction(runtime.engine) as session:
            if deletion_noticed(session, command.orthanc_id):
                return True
    return False


def _persist(runtime: Runtime, command: IngestStudy, extracted: ExtractedStudy) -> VersionOutcome:
    context = runtime.event_context(
        run_id=command.run_id, correlation_id=command.correlation_id, trigger=command.trigger
    )
    return persist_study_version(runtime, extracted, context)


def _publish(runtime: Runtime, outcome: VersionOutcome) -> int:
    """Send the study's pending events once; what Kafka does not take stays for the relay."""
    try:
        result = publish_pending_events(
            runtime.engine, runtime.producer, study_uid=outcome.study_instance_uid, raise_on_failure=False
        )
    except PipelineError as exc:
        log.warning(
            "events stay in the outbox for the relay",
            extra={"study_uid": outcome.study_instance_uid, "error": str(exc)[:300]},
        )
        return 0
    if result.failed:
        log.warning(
            "events stay in the outbox for the relay",
            extra={"study_uid": outcome.study_instance_uid, "pending": result.failed},
        )
    return result.published


def _give_up(
    runtime: Runtime, command: IngestStudy, failure: StepFailed, extracted: ExtractedStudy | None
) -> StudyResult:
    if extracted is not None:
        discard_staging(extracted)
    letter = dead_letter_for_failure(
        failure,
        correlation_id=command.correlation_id,
        trigger=command.trigger,
        orthanc_id=command.orthanc_id,
        run_id=command.run_id,
        study_uid=extracted.study_instance_uid if extracted is not None else None,
    )
    dead_letter_id = write_dead_letter(runtime, letter)
    error = f"{type(failure.cause).__name__}: {failure.cause}"
    # Only once the dead letter is durable: a request that reads "failed" has its letter.
    request_failed(runtime, command.request_id, f"{failure.step} failed: {error}")
    return StudyResult(command.orthanc_id, command.correlation_id, None, error=error, dead_letter_id=dead_letter_id)
