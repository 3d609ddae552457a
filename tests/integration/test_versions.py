"""Version guarantees the README makes, on the real Orthanc, PostgreSQL and Kafka:
`superseded` for a stale view, `removed` for an instance deleted in Orthanc."""

from __future__ import annotations

import time

import pytest
from dicom_pipeline_dev.http import ServiceSession

from dicom_pipeline.domain.identifiers import new_correlation_id
from dicom_pipeline.ingestion.extract import extract_study
from dicom_pipeline.ingestion.persist import persist_study_version
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import (
    KafkaTap,
    add_instances,
    ingest,
    outbox_published,
    query,
    seed_one,
    stored_sop_uids,
    wait_for_stable,
)

pytestmark = pytest.mark.integration


def _versions(study_uid: str) -> list[tuple[int, int]]:
    return [
        (int(r[0]), int(r[1]))
        for r in query(
            "SELECT v.version, v.number_of_instances FROM study_version v JOIN study s ON s.id = v.study_id "
            "WHERE s.study_instance_uid = :uid ORDER BY v.version",
            uid=study_uid,
        )
    ]


def test_a_view_older_than_the_committed_one_is_superseded_and_records_nothing(
    stack_settings: Settings, events: KafkaTap
) -> None:
    seeded, spec = seed_one(stack_settings, series=1, instances=1)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    assert ingest(seeded.orthanc_id)["status"] == "created"
    runtime = get_runtime()
    # A run reads Orthanc now (one instance) but is slow to commit...
    stale_view = extract_study(runtime, seeded.orthanc_id, "stale-run")
    time.sleep(1.1)  # LastUpdate has one-second resolution
    # ...while the study receives an instance and another run records it first.
    add_instances(stack_settings, spec, per_series=2)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    assert ingest(seeded.orthanc_id)["status"] == "updated"
    outbox_before = query("SELECT count(*) FROM outbox WHERE study_instance_uid = :uid", uid=spec.study_uid)

    context = runtime.event_context(run_id="stale-run", correlation_id=new_correlation_id(), trigger="test")
    outcome = persist_study_version(runtime, stale_view, context)

    assert (outcome.status, outcome.version) == ("superseded", 2)
    assert _versions(spec.study_uid) == [(1, 1), (2, 2)], "the stale view would have regressed the study"
    assert len(stored_sop_uids(spec.study_uid)) == 2
    assert query("SELECT count(*) FROM outbox WHERE study_instance_uid = :uid", uid=spec.study_uid) == outbox_before
    assert len(events.read_all(key=spec.study_uid, settled=lambda: outbox_published(spec.study_uid))) == 2, (
        "no event for the superseded view"
    )


def test_an_instance_deleted_in_orthanc_makes_version_n_plus_1_listing_it_removed(
    stack_settings: Settings, events: KafkaTap, orthanc: ServiceSession
) -> None:
    seeded, spec = seed_one(stack_settings, series=1, instances=3)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    assert ingest(seeded.orthanc_id)["status"] == "created"
    instances = orthanc.get(f"/studies/{seeded.orthanc_id}/instances").json()
    victim = instances[1]
    victim_uid = victim["MainDicomTags"]["SOPInstanceUID"]
    orthanc.delete(f"/instances/{victim['ID']}").raise_for_status()

    summary = ingest(seeded.orthanc_id)

    assert (summary["status"], summary["version"], summary["removed"]) == ("updated", 2, 1)
    assert _versions(spec.study_uid) == [(1, 3), (2, 2)]
    assert victim_uid not in stored_sop_uids(spec.study_uid)
    messages = events.read(expected=2, key=spec.study_uid)
    assert [m.value["event_type"] for m in messages] == ["study.created", "study.updated"]
    assert messages[1].value["changes"] == {"added": [], "removed": [victim_uid], "changed": []}
    assert messages[1].value["study"]["number_of_instances"] == 2
