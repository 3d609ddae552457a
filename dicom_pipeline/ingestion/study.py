"""The use case "ingest a study": extract, store, persist, publish; written once.

Its four steps are the functions below (`extract`, `store`, `persist`, `publish`), each
under the one RetryPolicy (transient errors only), and `give_up` writes a failed study's
one dead letter through `write_dead_letter`. The `ingest_study` Dagster job runs each step
as an op of its own and calls `give_up` from its failure hook; batch callers (backfill
partitions, reconciliation) and the CLI run them in a row through `ingest_study` below.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.ingestion_requests import DELETION_TRIGGER, deletion_noticed
from dicom_pipeline.db.repository import VersionOutcome, study_uid_of_orthanc_id
from dicom_pipeline.domain.metadata import ExtractedStudy
from dicom_pipeline.errors import OrthancNotFound, PermanentError, PipelineError, StudyChangedWhileReading
from dicom_pipeline.ingestion.dead_letter import dead_letter_for_failure, write_dead_letter
from dicom_pipeline.ingestion.extract import extract_study
from dicom_pipeline.ingestion.persist import discard_staging, persist_study_version, record_deletion
from dicom_pipeline.ingestion.requests import request_absent, request_failed, request_succeeded
from dicom_pipeline.ingestion.retry import DEFAULT_POLICY, RetryPolicy, StepFailed
from dicom_pipeline.ingestion.store import StoreReport, store_raw
from dicom_pipeline.kafka.outbox import publish_pending_events
from dicom_pipeline.logs import bound_correlation_id
from dicom_pipeline.runtime import Runtime

log = logging.getLogger(__name__)

# Step names are what dead letters record as failed_op (operators filter on them), and the
# names of the study job's ops.
EXTRACT, STORE, PERSIST, PUBLISH = "extract_study", "store_raw", "persist_metadata", "publish_events"
ABSENT = "absent"
DELETION_NOTICE_GRACE_SECONDS = 2.0


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


@dataclass(frozen=True)
class Extraction:
    """What the extract step hands on: the study as read from Orthanc, or (`study` None) that
    Orthanc no longer holds it and the persist step records the deletion, if there is one."""

    orthanc_id: str
    study: ExtractedStudy | None

    @property
    def study_uid(self) -> str | None:
        return self.study.study_instance_uid if self.study is not None else None


class StagingGone(PermanentError):
    """The files an earlier run staged are gone: only a run that extracts again can store them."""


def extract(runtime: Runtime, command: IngestStudy, policy: RetryPolicy = DEFAULT_POLICY) -> Extraction:
    """Stream the study's new files to staging and read their headers.

    A study Orthanc does not hold is not a failure when it was deleted: the database holds
    it (its deletion is recorded next), a deletion notice asked for this run, this run saw
    it go while reading, or Orthanc's deletion notice arrived. An id Orthanc never had is
    the caller's mistake: StepFailed, like every other failure.
    """
    vanished = False  # Orthanc held the study when this attempt began reading it

    def read() -> ExtractedStudy:
        nonlocal vanished
        try:
            return extract_study(runtime, command.orthanc_id, command.run_id)
        except StudyChangedWhileReading:
            vanished = True
            raise

    try:
        return Extraction(command.orthanc_id, policy.call(EXTRACT, read))
    except StepFailed as failure:
        if isinstance(failure.cause, OrthancNotFound) and policy.call(
            EXTRACT, lambda: _deleted_in_orthanc(runtime, command, vanished=vanished)
        ):
            return Extraction(command.orthanc_id, None)
        raise


def store(runtime: Runtime, extraction: Extraction, policy: RetryPolicy = DEFAULT_POLICY) -> StoreReport:
    """Staged files into the raw store, before any row points at them."""
    study = extraction.study
    if study is None:
        return StoreReport(written=0, unchanged=0, bytes_written=0)
    missing = [r.orthanc_id for r in study.new_records if r.staged_path and not Path(r.staged_path).exists()]
    if missing:
        # A run re-executed from this step: the run that staged the files has ended and its
        # staging went with it.
        raise StepFailed(
            STORE,
            StagingGone(
                f"{len(missing)} staged file(s) of study {study.study_instance_uid} are gone (the run that "
                "extracted them has ended); re-execute the whole run",
                study_uid=study.study_instance_uid,
            ),
            1,
        )
    return policy.call(STORE, lambda: store_raw(runtime, study))


def persist(
    runtime: Runtime, command: IngestStudy, extraction: Extraction, policy: RetryPolicy = DEFAULT_POLICY
) -> VersionOutcome | None:
    """The version's rows and its event in one transaction, or the deletion's; None when
    there is nothing to record (a study deleted before it was ever ingested)."""
    context = runtime.event_context(
        run_id=command.run_id, correlation_id=command.correlation_id, trigger=command.trigger
    )
    study = extraction.study
    if study is not None:
        return policy.call(PERSIST, lambda: persist_study_version(runtime, study, context))
    outcome = policy.call(PERSIST, lambda: record_deletion(runtime, command.orthanc_id, context))
    if outcome is None:
        log.info("deleted study was never ingested: nothing to do", extra={"orthanc_id": command.orthanc_id})
    else:
        log.info(
            "study deleted in Orthanc",
            extra={
                "study_uid": outcome.study_instance_uid,
                "version": outcome.version,
                "new_event": bool(outcome.event_id),
            },
        )
    return outcome


def publish(runtime: Runtime, command: IngestStudy, outcome: VersionOutcome | None) -> int:
    """Send the study's pending events once (what Kafka does not take waits in the outbox for
    the relay), then close the webhook request that asked, if one did."""
    if outcome is None:
        request_absent(runtime, command.request_id)
        return 0
    published = _publish(runtime, outcome)
    request_succeeded(runtime, command.request_id, outcome)
    return published


def give_up(
    runtime: Runtime, command: IngestStudy, failure: StepFailed, *, study_uid: str | None = None
) -> tuple[int, str]:
    """The failed study's one dead letter (and its DLQ event), then its request marked
    failed; returns (dead letter id, error)."""
    letter = dead_letter_for_failure(
        failure,
        correlation_id=command.correlation_id,
        trigger=command.trigger,
        orthanc_id=command.orthanc_id,
        run_id=command.run_id,
        study_uid=study_uid,
    )
    dead_letter_id = write_dead_letter(runtime, letter)
    error = f"{type(failure.cause).__name__}: {failure.cause}"
    # Only once the dead letter is durable: a request that reads "failed" has its letter.
    request_failed(runtime, command.request_id, f"{failure.step} failed: {error}")
    return dead_letter_id, error


def ingest_study(runtime: Runtime, command: IngestStudy, *, policy: RetryPolicy = DEFAULT_POLICY) -> StudyResult:
    """The four steps in a row, for callers that ingest many studies in one run; never
    raises for the study's own failures (they become dead letters)."""
    with bound_correlation_id(command.correlation_id):
        extraction: Extraction | None = None
        try:
            extraction = extract(runtime, command, policy)
            store(runtime, extraction, policy)
            outcome = persist(runtime, command, extraction, policy)
        except StepFailed as failure:
            if extraction is not None and extraction.study is not None:
                discard_staging(extraction.study)
            dead_letter_id, error = give_up(
                runtime, command, failure, study_uid=extraction.study_uid if extraction else None
            )
            return StudyResult(
                command.orthanc_id, command.correlation_id, None, error=error, dead_letter_id=dead_letter_id
            )
        published = publish(runtime, command, outcome)
        return StudyResult(command.orthanc_id, command.correlation_id, outcome, events_published=published)


def _deleted_in_orthanc(runtime: Runtime, command: IngestStudy, *, vanished: bool) -> bool:
    if vanished or command.trigger == DELETION_TRIGGER:
        return True
    with transaction(runtime.engine) as session:
        if study_uid_of_orthanc_id(session, command.orthanc_id) is not None:
            return True
    return _deletion_noticed(runtime, command)


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
