"""Closing the loop for webhook requests: the run that served one records how it ended."""

from __future__ import annotations

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.ingestion_requests import mark_finished
from dicom_pipeline.db.repository import VersionOutcome
from dicom_pipeline.runtime import Runtime


def request_succeeded(runtime: Runtime, request_id: str | None, outcome: VersionOutcome) -> None:
    if not request_id:
        return
    with transaction(runtime.engine) as session:
        mark_finished(
            session,
            request_id,
            succeeded=True,
            study_uid=outcome.study_instance_uid,
            version=outcome.version,
            outcome=outcome.status,
        )


def request_failed(runtime: Runtime, request_id: str | None, error: str) -> None:
    if not request_id:
        return
    with transaction(runtime.engine) as session:
        mark_finished(session, request_id, succeeded=False, error=error)
