"""Announcements of one Orthanc state share one run: on the real PostgreSQL and Orthanc.

The launcher's GraphQL submission is replaced by a recorder (what is under test is which
requests get a run, decided from the database and Orthanc's LastUpdate); the e2e tests
launch through the real Dagster.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dicom_pipeline_dev.http import ServiceSession

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.ingestion_requests import create_request, gather_deletion_notice, get_request
from dicom_pipeline.db.repository import VersionOutcome
from dicom_pipeline.ingestion.change_feed import FeedCursor
from dicom_pipeline.ingestion.requests import as_seen_by_caller, request_succeeded
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import change_feed_tick, execute, ingest, query, seed_one, wait_for_stable
from webhook.launcher import RunLauncher

pytestmark = pytest.mark.integration


class RecordingClient:
    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []

    def submit_job_execution(self, job_name: str, **kwargs: Any) -> str:
        self.submitted.append({"job_name": job_name, **kwargs})
        return str(uuid.uuid4())


class RecordingLauncher(RunLauncher):
    def __init__(self) -> None:
        super().__init__(get_runtime())
        self.recorder = RecordingClient()

    def client(self) -> Any:
        return self.recorder


@pytest.fixture()
def stable_study(stack_settings: Settings) -> Iterator[str]:
    seeded, _ = seed_one(stack_settings, modality="DX", size=8)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    yield seeded.orthanc_id
    execute("DELETE FROM ingestion_request WHERE orthanc_id = :id", id=seeded.orthanc_id)


def _new_request(orthanc_id: str, correlation_id: str) -> str:
    with transaction(get_runtime().engine) as session:
        return str(create_request(session, orthanc_id, correlation_id, "webhook").id)


def _state(request_id: str) -> tuple[str, str | None]:
    with transaction(get_runtime().engine) as session:
        row = get_request(session, uuid.UUID(request_id))
        assert row is not None
        serving = as_seen_by_caller(session, row)
        return serving.status, serving.run_id


def test_three_announcements_of_one_state_launch_one_run_and_read_alike(stable_study: str) -> None:
    ids = [_new_request(stable_study, f"dedupe-{n}") for n in range(3)]
    launcher = RecordingLauncher()

    launcher.launch_pending()
    # Only this study's runs: the launcher takes every pending request, another test's too.
    # (Once, 2026-12-07, launch_pending() returned 2 here; which request the second was is
    # unknown. This assertion still fails on a second run of this study, and says what ran.)
    submitted = [s for s in launcher.recorder.submitted if s["tags"]["dicom/orthanc_id"] == stable_study]
    assert len(submitted) == 1, launcher.recorder.submitted
    tags = submitted[0]["tags"]
    assert tags["dicom/request_id"] == ids[0] and tags["dicom/correlation_id"] == "dedupe-0"
    states = [_state(i) for i in ids]
    assert set(states) == {("launched", states[0][1])}, "duplicates read as the first request"
    assert query("SELECT count(*) FROM ingestion_request WHERE duplicate_of = CAST(:id AS uuid)", id=ids[0]) == [(2,)]

    # The run ends (recorded on the request it was launched for): every announcement reads succeeded.
    outcome = VersionOutcome("created", "1.2.826.0.1.3680043.8.498.1", 1, "hash", None, 1, 1, 1, 0, 0)
    request_succeeded(get_runtime(), ids[0], outcome)
    assert {_state(i)[0] for i in ids} == {"succeeded"}
    assert (
        query("SELECT status, version FROM ingestion_request WHERE id = ANY(CAST(:ids AS uuid[]))", ids=ids)
        == [("succeeded", 1)] * 3
    )


def test_an_announcement_of_a_state_already_ingested_needs_no_run(stable_study: str) -> None:
    assert ingest(stable_study)["status"] in ("created", "unchanged")
    request_id = _new_request(stable_study, "dedupe-late")
    launcher = RecordingLauncher()

    assert launcher.launch_pending() == 0
    assert launcher.recorder.submitted == []
    assert query(
        "SELECT status, outcome, version FROM ingestion_request WHERE id = CAST(:id AS uuid)", id=request_id
    ) == [("succeeded", "unchanged", 1)]


def _submitted_for(launcher: RecordingLauncher, orthanc_id: str) -> list[dict[str, str]]:
    """The tags of runs submitted for one study (requests left by other tests may launch too)."""
    return [r["tags"] for r in launcher.recorder.submitted if r["tags"]["dicom/orthanc_id"] == orthanc_id]


def _deletion_notice(orthanc_id: str, *, settled: bool) -> str:
    with transaction(get_runtime().engine) as session:
        request_id = str(gather_deletion_notice(session, orthanc_id, f"deletion-{uuid.uuid4().hex[:8]}").id)
    if settled:  # as if the study's last notice came in a while ago
        execute(
            "UPDATE ingestion_request SET updated_at = now() - interval '5 seconds' WHERE id = CAST(:id AS uuid)",
            id=request_id,
        )
    return request_id


def test_deletion_notices_wait_to_settle_then_get_a_run_although_the_state_was_ingested(stable_study: str) -> None:
    # Orthanc does not move LastUpdate when an instance is deleted: the ingested state's
    # LastUpdate must not make a deletion notice look "already ingested".
    assert ingest(stable_study)["status"] in ("created", "unchanged")
    request_id = _deletion_notice(stable_study, settled=False)
    launcher = RecordingLauncher()

    launcher.launch_pending()
    assert _submitted_for(launcher, stable_study) == [], "a notice still arriving was launched"
    execute(
        "UPDATE ingestion_request SET updated_at = now() - interval '5 seconds' WHERE id = CAST(:id AS uuid)",
        id=request_id,
    )
    launcher.launch_pending()
    [submitted] = _submitted_for(launcher, stable_study)
    assert submitted["dicom/request_id"] == request_id and submitted["dicom/trigger"] == "orthanc-deletion"


def test_a_deletion_notice_for_a_study_already_recorded_deleted_needs_no_run(
    stable_study: str, orthanc: ServiceSession
) -> None:
    assert ingest(stable_study)["status"] in ("created", "unchanged")
    orthanc.delete(f"/studies/{stable_study}").raise_for_status()
    assert ingest(stable_study, trigger="orthanc-deletion")["status"] == "deleted"
    request_id = _deletion_notice(stable_study, settled=True)
    launcher = RecordingLauncher()

    launcher.launch_pending()
    assert _submitted_for(launcher, stable_study) == []
    assert query(
        "SELECT status, outcome, orthanc_last_update FROM ingestion_request WHERE id = CAST(:id AS uuid)",
        id=request_id,
    ) == [("succeeded", "deleted", "deleted")]


def test_the_sensor_skips_a_study_a_webhook_request_covers(stable_study: str) -> None:
    # The study's StableStudy change is among Orthanc's latest; evaluate from just before it.
    with get_runtime().orthanc() as orthanc:
        before = int(orthanc.last_change()["Last"])
        feed = orthanc.changes(max(0, before - 50), 100)["Changes"]
    seq = min(int(c["Seq"]) for c in feed if c["ID"] == stable_study and c["ChangeType"] == "StableStudy")
    cursor = FeedCursor(seq - 1).dump()

    def study_runs() -> list[str]:
        runs = change_feed_tick(cursor).run_requests or []
        return [r.tags["dicom/orthanc_id"] for r in runs if r.tags.get("dicom/orthanc_id") == stable_study]

    assert study_runs() == [stable_study], "without a request the sensor launches"
    _new_request(stable_study, "dedupe-sensor")
    assert study_runs() == [], "a waiting webhook request covers the study"
