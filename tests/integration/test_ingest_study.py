"""ingest_study against the real Orthanc, PostgreSQL and Kafka of the stack."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from dicom_pipeline_dev.seed.synth import SeedPlan, build_instances, plan_studies

from dicom_pipeline.domain.events import validate_payload
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings
from dicom_pipeline.storage.local import LocalRawStore
from tests.helpers import (
    KafkaTap,
    add_instances,
    ingest,
    orthanc_study_id,
    outbox_published,
    query,
    seed_one,
    stored_sop_uids,
    unique_seed,
    upload,
)

pytestmark = pytest.mark.integration


def _stored_files(study_uid: str) -> dict[Path, tuple[int, int]]:
    store = get_runtime().raw_store
    assert isinstance(store, LocalRawStore)
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (store.root / study_uid).rglob("*.dcm")}


def test_seeded_study_is_ingested_with_rows_files_and_one_valid_event(
    stack_settings: Settings, events: KafkaTap
) -> None:
    seeded, spec = seed_one(stack_settings, series=2, instances=3)
    summary = ingest(seeded.orthanc_id, correlation_id="test-happy-path")

    assert summary["status"] == "created"
    assert (summary["version"], summary["number_of_series"], summary["number_of_instances"]) == (1, 2, 6)
    study = query(
        "SELECT patient_name, patient_id, study_date, modalities_in_study, number_of_series, number_of_instances, "
        "specific_character_set FROM study WHERE study_instance_uid = :uid",
        uid=spec.study_uid,
    )
    assert study == [(spec.patient_name, spec.patient_id, spec.study_date, ["CT"], 2, 6, "ISO_IR 192")]
    series = query(
        "SELECT se.series_instance_uid, se.modality, se.number_of_instances FROM series se JOIN study st "
        "ON st.id = se.study_id WHERE st.study_instance_uid = :uid ORDER BY se.series_number",
        uid=spec.study_uid,
    )
    assert [(s[0], s[1], s[2]) for s in series] == [(uid, "CT", 3) for uid in spec.series_uids]

    store = get_runtime().raw_store
    instances = query(
        "SELECT i.storage_key, i.sha256, i.size_bytes, i.rows, i.header ? '7FE00010' FROM instance i "
        "JOIN study s ON s.id = i.study_id WHERE s.study_instance_uid = :uid",
        uid=spec.study_uid,
    )
    assert len(instances) == 6
    for key, sha256, size, rows, has_pixel_data in instances:
        with store.open(key) as handle:
            data = handle.read()
        assert hashlib.sha256(data).hexdigest() == sha256 and len(data) == size
        assert rows == 32
        assert not has_pixel_data, "pixel data must never reach the database"

    version = query(
        "SELECT v.correlation_id, v.trigger, v.event_id::text FROM study_version v JOIN study s ON s.id = v.study_id "
        "WHERE s.study_instance_uid = :uid",
        uid=spec.study_uid,
    )
    assert version == [("test-happy-path", "test", summary["event_id"])]

    messages = events.read(expected=1, key=spec.study_uid)
    assert len(messages) == 1
    message = messages[0]
    validate_payload("dicom.metadata.v1", message.value)
    assert message.value["event_id"] == summary["event_id"]
    assert message.value["event_type"] == "study.created"
    assert sorted(message.value["changes"]["added"]) == sorted(
        r[0]
        for r in query(
            "SELECT sop_instance_uid FROM instance i JOIN study s ON s.id = i.study_id "
            "WHERE s.study_instance_uid = :uid",
            uid=spec.study_uid,
        )
    )
    assert message.headers["correlation_id"] == "test-happy-path"
    assert message.headers["event_type"] == "study.created"
    assert message.headers["schema_version"] == "1.1"


def test_same_content_ingested_twice_creates_no_version_event_or_file_write(
    stack_settings: Settings, events: KafkaTap
) -> None:
    seeded, spec = seed_one(stack_settings, series=1, instances=2)
    first = ingest(seeded.orthanc_id)
    files_before = _stored_files(spec.study_uid)
    rows_before = query("SELECT count(*) FROM outbox WHERE study_instance_uid = :uid", uid=spec.study_uid)
    updated_before = query(
        "SELECT max(i.updated_at), s.updated_at FROM instance i JOIN study s ON s.id = i.study_id "
        "WHERE s.study_instance_uid = :uid GROUP BY s.updated_at",
        uid=spec.study_uid,
    )

    second = ingest(seeded.orthanc_id)

    assert (first["status"], second["status"]) == ("created", "unchanged")
    assert second["version"] == 1 and second["event_id"] is None
    assert _stored_files(spec.study_uid) == files_before
    assert query("SELECT count(*) FROM outbox WHERE study_instance_uid = :uid", uid=spec.study_uid) == rows_before
    assert (
        query(
            "SELECT max(i.updated_at), s.updated_at FROM instance i JOIN study s ON s.id = i.study_id "
            "WHERE s.study_instance_uid = :uid GROUP BY s.updated_at",
            uid=spec.study_uid,
        )
        == updated_before
    )
    assert len(events.read_all(key=spec.study_uid, settled=lambda: outbox_published(spec.study_uid))) == 1


def test_instances_added_later_make_version_two_listing_exactly_the_additions(
    stack_settings: Settings, events: KafkaTap
) -> None:
    seeded, spec = seed_one(stack_settings, series=2, instances=2)
    ingest(seeded.orthanc_id)
    before = stored_sop_uids(spec.study_uid)

    add_instances(stack_settings, spec, per_series=3)
    summary = ingest(seeded.orthanc_id)

    after = stored_sop_uids(spec.study_uid)
    assert summary["status"] == "updated" and summary["version"] == 2 and summary["added"] == 2
    messages = events.read(expected=2, key=spec.study_uid)
    assert [m.value["event_type"] for m in messages] == ["study.created", "study.updated"]
    assert sorted(messages[1].value["changes"]["added"]) == sorted(after - before)
    assert messages[1].value["study"]["previous_content_hash"] == messages[0].value["study"]["content_hash"]
    assert messages[1].value["study"]["number_of_instances"] == 6


def test_concurrent_runs_of_one_study_make_one_version_and_one_event(
    stack_settings: Settings, events: KafkaTap
) -> None:
    seeded, spec = seed_one(stack_settings, series=2, instances=4)
    # Separate processes, as the daemon would launch them: nothing shared but the services.
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "dicom_pipeline.cli", "ingest", seeded.orthanc_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(3)
    ]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in processes]

    statuses = sorted(r["status"] for r in results)
    assert statuses.count("created") == 1, statuses
    assert set(statuses) <= {"created", "unchanged"}
    assert query(
        "SELECT count(*) FROM study_version v JOIN study s ON s.id = v.study_id WHERE s.study_instance_uid = :uid",
        uid=spec.study_uid,
    ) == [(1,)]
    assert len(events.read_all(key=spec.study_uid, settled=lambda: outbox_published(spec.study_uid))) == 1


@pytest.mark.parametrize(
    ("charset", "name"),
    [("ISO_IR 100", "Øvergård^Søren"), ("ISO_IR 192", "Łukasiewicz^Żaneta"), ("ISO_IR 192", "山田^太郎")],
)
def test_non_ascii_patient_names_are_correct_utf8_in_database_and_event(
    stack_settings: Settings, events: KafkaTap, charset: str, name: str
) -> None:
    spec = replace(
        plan_studies(
            SeedPlan(studies=1, modalities=("DX",), rows=16, columns=16, charsets=(charset,), seed=unique_seed())
        )[0],
        patient_name=name,
    )
    upload(stack_settings, build_instances(spec))
    orthanc_id = orthanc_study_id(stack_settings, spec.study_uid)

    assert ingest(orthanc_id)["status"] == "created"
    assert query("SELECT patient_name FROM study WHERE study_instance_uid = :uid", uid=spec.study_uid) == [(name,)]
    message = events.read(expected=1, key=spec.study_uid)[0]
    assert message.value["study"]["patient"]["patient_name"] == name
