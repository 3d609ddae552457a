"""Deletions end to end: Orthanc's Lua deletion callbacks -> webhook -> daemon -> worker -> Kafka.

Only Orthanc's own callbacks notify here (the change-feed sensor is off and no test posts),
so these tests prove the Lua script, the webhook's gathering of one study's notices and the
launcher's decisions on the real processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicom_pipeline_dev.http import ServiceSession

from dicom_pipeline.settings import Settings
from tests.e2e.system import FINISHED_RUN_STATUSES, System, SystemPool, wait_for
from tests.helpers import KafkaTap, all_requests_finished, query, seed_one

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 180  # a hang guard only


@pytest.fixture(scope="module")
def system(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    pool = SystemPool(stack_settings, Path(tmp_path_factory.mktemp("deletion-systems")))
    chosen = pool.get("webhook", sensor=False)
    chosen.ensure(dagster=True, webhook=True)
    yield chosen
    pool.close()


def _versions(study_uid: str) -> list[tuple[int, bool, str]]:
    return [
        (int(r[0]), bool(r[1]), str(r[2]))
        for r in query(
            "SELECT v.version, v.deleted, v.trigger FROM study_version v JOIN study s ON s.id = v.study_id "
            "WHERE s.study_instance_uid = :uid ORDER BY v.version",
            uid=study_uid,
        )
    ]


def _ingested_by_lua(system: System, orthanc_id: str, study_uid: str) -> None:
    wait_for(lambda: _versions(study_uid), RUN_TIMEOUT, "the OnStableStudy-triggered version")
    wait_for(lambda: all_requests_finished(orthanc_id), RUN_TIMEOUT, "the study request to finish")


def test_deleting_a_study_in_orthanc_publishes_exactly_one_deletion_event(
    stack_settings: Settings, system: System, events: KafkaTap, orthanc: ServiceSession
) -> None:
    seeded, spec = seed_one(stack_settings, series=2, instances=3)
    _ingested_by_lua(system, seeded.orthanc_id, spec.study_uid)
    assert events.read(expected=1, key=spec.study_uid)[0].value["event_type"] == "study.created"

    started = time.monotonic()
    orthanc.delete(f"/studies/{seeded.orthanc_id}").raise_for_status()
    # 1 study + 6 instance callbacks, gathered by the webhook into (nearly always) one run.
    wait_for(
        lambda: query(
            "SELECT 1 FROM study WHERE study_instance_uid = :uid AND deleted_at IS NOT NULL", uid=spec.study_uid
        ),
        RUN_TIMEOUT,
        "the study to be marked deleted",
    )
    deleted_after = time.monotonic() - started
    wait_for(lambda: all_requests_finished(seeded.orthanc_id), RUN_TIMEOUT, "every deletion request to finish")
    messages = events.read_all(key=spec.study_uid, settled=lambda: system.settled(seeded.orthanc_id, spec.study_uid))

    assert [m.value["event_type"] for m in messages] == ["study.deleted"], "exactly one deletion event"
    assert messages[0].value["trigger"] == "orthanc-deletion"
    assert _versions(spec.study_uid) == [(1, False, "webhook"), (2, True, "orthanc-deletion")]
    notices = query(
        "SELECT status, outcome FROM ingestion_request WHERE orthanc_id = :id AND trigger = 'orthanc-deletion'",
        id=seeded.orthanc_id,
    )
    assert notices and all(status == "succeeded" and outcome == "deleted" for status, outcome in notices), notices
    runs = system.study_runs(seeded.orthanc_id)
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    # One run for the study's creation, and the deletion's notices share (at most) two.
    assert 2 <= len(runs) <= 3, f"{len(runs)} runs for one study and its deletion"
    print(f"deletion recorded {deleted_after:.1f}s after DELETE /studies, {len(runs) - 1} deletion run(s)")


def test_deleting_one_instance_in_orthanc_makes_version_n_plus_1_listing_it_removed(
    stack_settings: Settings, system: System, events: KafkaTap, orthanc: ServiceSession
) -> None:
    seeded, spec = seed_one(stack_settings, series=1, instances=3)
    _ingested_by_lua(system, seeded.orthanc_id, spec.study_uid)
    victim = orthanc.get(f"/studies/{seeded.orthanc_id}/instances").json()[2]

    orthanc.delete(f"/instances/{victim['ID']}").raise_for_status()
    wait_for(lambda: len(_versions(spec.study_uid)) == 2, RUN_TIMEOUT, "version 2")
    wait_for(lambda: all_requests_finished(seeded.orthanc_id), RUN_TIMEOUT, "the deletion request to finish")

    assert _versions(spec.study_uid) == [(1, False, "webhook"), (2, False, "orthanc-deletion")]
    created, updated = events.read_all(
        key=spec.study_uid, settled=lambda: system.settled(seeded.orthanc_id, spec.study_uid)
    )
    assert (created.value["event_type"], updated.value["event_type"]) == ("study.created", "study.updated")
    assert updated.value["changes"] == {
        "added": [],
        "removed": [victim["MainDicomTags"]["SOPInstanceUID"]],
        "changed": [],
    }
    assert updated.value["study"]["number_of_instances"] == 2


def test_a_study_deleted_while_its_ingestion_runs_ends_as_orthanc_has_it(
    stack_settings: Settings, system: System, events: KafkaTap, orthanc: ServiceSession
) -> None:
    # Big enough that the Lua-triggered run is still reading when the study goes.
    seeded, spec = seed_one(stack_settings, series=2, instances=60, size=256)
    wait_for(
        lambda: query(
            "SELECT 1 FROM ingestion_request WHERE orthanc_id = :id AND run_id IS NOT NULL", id=seeded.orthanc_id
        ),
        RUN_TIMEOUT,
        "the OnStableStudy run to be launched",
    )
    orthanc.delete(f"/studies/{seeded.orthanc_id}").raise_for_status()
    wait_for(lambda: all_requests_finished(seeded.orthanc_id), RUN_TIMEOUT, "every request to finish")
    wait_for(
        lambda: all(r["status"] in FINISHED_RUN_STATUSES for r in system.study_runs(seeded.orthanc_id)),
        RUN_TIMEOUT,
        "every run of the study to end",
    )

    # Orthanc holds nothing: the database holds no current study either, whichever won.
    current = query(
        "SELECT count(*) FROM study WHERE study_instance_uid = :uid AND deleted_at IS NULL", uid=spec.study_uid
    )
    assert current == [(0,)], _versions(spec.study_uid)
    versions = _versions(spec.study_uid)
    everything = events.read_all(key=spec.study_uid, settled=lambda: system.settled(seeded.orthanc_id, spec.study_uid))
    types = [m.value["event_type"] for m in everything]
    if versions:  # the ingestion committed first: its deletion followed
        assert versions[-1][1] is True and types == ["study.created", "study.deleted"]
    else:  # the deletion came while reading: nothing was ever published
        assert types == []
    assert query(
        "SELECT count(*) FROM dead_letter WHERE orthanc_id = :id AND resolved_at IS NULL", id=seeded.orthanc_id
    ) == [(0,)], "a study deleted while being read is not a failure"
    assert all(r["status"] == "SUCCESS" for r in system.study_runs(seeded.orthanc_id))
