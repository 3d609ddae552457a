"""How webhook requests end, on the real PostgreSQL, whatever order the reports arrive in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.ingestion_requests import create_request
from dicom_pipeline.db.repository import VersionOutcome
from dicom_pipeline.ingestion.requests import request_failed, request_succeeded
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import execute, made_up_orthanc_id, query


@pytest.fixture()
def request_id(stack_settings: Settings) -> Iterator[str]:
    with transaction(get_runtime().engine) as session:
        key = str(create_request(session, made_up_orthanc_id(), "requests-test", "webhook").id)
    yield key
    execute("DELETE FROM ingestion_request WHERE id = CAST(:id AS uuid)", id=key)


def _outcome() -> VersionOutcome:
    return VersionOutcome("created", "1.2.826.0.1.3680043.8.498.1", 1, "hash", None, 1, 1, 1, 0, 0)


def _status(request_id: str) -> list[object]:
    return query(
        "SELECT status, version, outcome, error FROM ingestion_request WHERE id = CAST(:id AS uuid)", id=request_id
    )


def test_a_late_failure_report_does_not_undo_a_retry_that_succeeded(request_id: str) -> None:
    # The backstop sensor can report the killed run after its retry has ingested the study.
    request_succeeded(get_runtime(), request_id, _outcome())
    request_failed(get_runtime(), request_id, "RunFailure: worker killed")
    assert _status(request_id) == [("succeeded", 1, "created", None)]


def test_a_success_after_a_failure_reads_succeeded(request_id: str) -> None:
    request_failed(get_runtime(), request_id, "RunFailure: worker killed")
    assert _status(request_id) == [("failed", None, None, "RunFailure: worker killed")]
    request_succeeded(get_runtime(), request_id, _outcome())
    assert _status(request_id) == [("succeeded", 1, "created", None)]
