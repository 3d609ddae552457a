"""Ingest one study in this thread, step by step, as the ops do, with retries and a dead letter.

Batch work (reconciliation, date backfills) uses this to ingest many studies in one
process instead of one Dagster run each; the steps and their guarantees are the same.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dicom_pipeline.db.dead_letters import DeadLetterInput
from dicom_pipeline.db.repository import VersionOutcome
from dicom_pipeline.domain.identifiers import new_correlation_id
from dicom_pipeline.errors import PipelineError
from dicom_pipeline.ingestion.dead_letter import write_dead_letter
from dicom_pipeline.ingestion.extract import extract_study
from dicom_pipeline.ingestion.persist import discard_staging, persist_study_version
from dicom_pipeline.ingestion.store import store_raw
from dicom_pipeline.kafka.outbox import publish_pending_events
from dicom_pipeline.logs import bound_correlation_id
from dicom_pipeline.runtime import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_ATTEMPTS = 4


@dataclass(frozen=True)
class StudyResult:
    orthanc_id: str
    correlation_id: str
    outcome: VersionOutcome | None
    error: str | None = None
    dead_letter_id: int | None = None

    @property
    def status(self) -> str:
        return self.outcome.status if self.outcome is not None else "failed"


class _StepFailed(Exception):
    def __init__(self, step: str, cause: BaseException, attempts: int) -> None:
        super().__init__(str(cause))
        self.step, self.cause, self.attempts = step, cause, attempts


def _with_retries(step: str, fn: Callable[[], T]) -> T:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return fn()
        except PipelineError as exc:
            if not exc.transient or attempt == MAX_ATTEMPTS:
                raise _StepFailed(step, exc, attempt) from exc
        except Exception as exc:
            if attempt == MAX_ATTEMPTS:
                raise _StepFailed(step, exc, attempt) from exc
        time.sleep(min(2 ** (attempt - 1), 8) * random.uniform(0.5, 1.5))  # noqa: S311 - jitter
    raise AssertionError("unreachable")


def ingest_study_now(runtime: Runtime, orthanc_id: str, *, trigger: str, run_id: str | None) -> StudyResult:
    correlation_id = new_correlation_id()
    with bound_correlation_id(correlation_id):
        extracted = None
        try:
            extracted = _with_retries("extract_study", lambda: extract_study(runtime, orthanc_id, run_id))
            _with_retries("store_raw", lambda: store_raw(runtime, extracted))
            context = runtime.event_context(run_id=run_id, correlation_id=correlation_id, trigger=trigger)
            outcome = _with_retries("persist_metadata", lambda: persist_study_version(runtime, extracted, context))
            _with_retries(
                "publish_event",
                lambda: publish_pending_events(runtime.engine, runtime.producer, study_uid=outcome.study_instance_uid),
            )
            return StudyResult(orthanc_id, correlation_id, outcome)
        except _StepFailed as failure:
            if extracted is not None:
                discard_staging(extracted)
            cause = failure.cause
            dead_letter_id = write_dead_letter(
                runtime,
                DeadLetterInput(
                    correlation_id=correlation_id,
                    trigger=trigger,
                    study_instance_uid=getattr(cause, "study_uid", None)
                    or (extracted.study_instance_uid if extracted else None),
                    orthanc_id=orthanc_id,
                    instance=getattr(cause, "instance", None),
                    run_id=run_id,
                    failed_op=failure.step,
                    error_type=type(cause).__name__,
                    error_message=str(cause),
                    transient=isinstance(cause, PipelineError) and cause.transient,
                    attempts=failure.attempts,
                ),
            )
            return StudyResult(orthanc_id, correlation_id, None, f"{type(cause).__name__}: {cause}", dead_letter_id)
