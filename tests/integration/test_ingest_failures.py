"""Bad input and broken dependencies: a dead letter that says why, and nothing half-written."""

from __future__ import annotations

import pytest
from dicom_pipeline_dev.seed.synth import SeedPlan, build_instances, plan_studies
from dicom_pipeline_dev.stack.kafka import KafkaService

from dicom_pipeline.domain.events import validate_payload
from dicom_pipeline.kafka.outbox import publish_pending_events
from dicom_pipeline.runtime import get_runtime, reset_runtime
from dicom_pipeline.settings import Settings
from dicom_pipeline.storage.local import LocalRawStore
from tests.helpers import KafkaTap, ingest, orthanc_study_id, outbox_published, query, seed_one, unique_seed, upload

pytestmark = pytest.mark.integration


def test_instance_missing_a_required_uid_dead_letters_naming_it_and_writes_nothing(
    stack_settings: Settings, dead_letters: KafkaTap
) -> None:
    spec = plan_studies(
        SeedPlan(
            studies=1,
            modalities=("CT",),
            series_per_study=1,
            instances_per_series=3,
            rows=16,
            columns=16,
            seed=unique_seed(),
        )
    )[0]
    datasets = list(build_instances(spec))
    # Orthanc accepts a control character in a UID; no key, log line or consumer should get one.
    datasets[1].SOPInstanceUID = datasets[1].SOPInstanceUID + "\x01"
    instance_ids = upload(stack_settings, datasets)
    orthanc_id = orthanc_study_id(stack_settings, spec.study_uid)

    summary = ingest(orthanc_id, correlation_id="test-bad-instance")

    assert summary["status"] == "failed"
    assert "SOPInstanceUID contains control characters" in summary["error"]
    letters = query(
        "SELECT failed_op, error_type, error_message, instance, orthanc_id, correlation_id, attempts FROM dead_letter "
        "WHERE run_id = :run",
        run=summary["run_id"],
    )
    assert len(letters) == 1
    failed_op, error_type, message, instance, letter_orthanc_id, correlation_id, attempts = letters[0]
    assert (failed_op, error_type, instance, letter_orthanc_id) == (
        "extract_study",
        "InvalidDicom",
        instance_ids[1],
        orthanc_id,
    )
    assert instance_ids[1] in message and "SOPInstanceUID" in message
    assert correlation_id == "test-bad-instance"
    assert attempts == 1, "a permanent error must not be retried"
    assert query("SELECT count(*) FROM study WHERE study_instance_uid = :uid", uid=spec.study_uid) == [(0,)]
    store = get_runtime().raw_store
    assert isinstance(store, LocalRawStore)
    assert not (store.root / spec.study_uid).exists()
    assert not list(get_runtime().staging_root.glob(f"{orthanc_id}-*")), "staging must be cleaned"

    message_on_topic = dead_letters.read(expected=1, key=spec.study_uid)
    assert len(message_on_topic) == 1
    validate_payload("dicom.metadata.dlq", message_on_topic[0].value)
    assert message_on_topic[0].value["instance"] == instance_ids[1]
    assert message_on_topic[0].headers["correlation_id"] == "test-bad-instance"


def test_unknown_orthanc_study_dead_letters_with_the_reason(stack_settings: Settings) -> None:
    unknown = "00000000-00000000-00000000-00000000-00000000"
    summary = ingest(unknown)
    assert summary["status"] == "failed"
    assert query("SELECT error_type, orthanc_id FROM dead_letter WHERE run_id = :run", run=summary["run_id"]) == [
        ("OrthancNotFound", unknown)
    ]


def test_minimal_phi_profile_event_has_no_patient_name_or_birth_date(
    stack_settings: Settings, runtime_env: pytest.MonkeyPatch, events: KafkaTap
) -> None:
    runtime_env.setenv("DICOM_PIPELINE_EVENT_PHI_PROFILE", "minimal")
    reset_runtime()
    seeded, spec = seed_one(stack_settings, modality="CR")
    assert ingest(seeded.orthanc_id)["status"] == "created"

    message = events.read(expected=1, key=spec.study_uid)[0]
    patient = message.value["study"]["patient"]
    assert "patient_name" not in patient and "patient_birth_date" not in patient
    assert patient["patient_id"].startswith("hmac-sha256:") and spec.patient_id not in patient["patient_id"]
    assert spec.patient_name not in message.value.__repr__()
    # The database keeps everything.
    assert query(
        "SELECT patient_name, patient_birth_date_raw FROM study WHERE study_instance_uid = :uid", uid=spec.study_uid
    ) == [(spec.patient_name, "19700101")]


def test_kafka_down_ingests_the_study_keeps_its_event_in_the_outbox_and_relay_publishes_it_once(
    stack_settings: Settings, runtime_env: pytest.MonkeyPatch, events: KafkaTap, kafka_stopped: KafkaService
) -> None:
    runtime_env.setenv("DICOM_PIPELINE_KAFKA_DELIVERY_TIMEOUT_SECONDS", "2")
    reset_runtime()
    seeded, spec = seed_one(stack_settings, modality="DX")

    summary = ingest(seeded.orthanc_id)

    # The version and its event were committed together; only the send is pending.
    assert (summary["status"], summary["events_published"]) == ("created", 0)
    assert query(
        "SELECT v.version, o.published_at IS NULL, o.publish_attempts > 0 FROM study_version v "
        "JOIN study s ON s.id = v.study_id JOIN outbox o ON o.event_id = v.event_id "
        "WHERE s.study_instance_uid = :uid",
        uid=spec.study_uid,
    ) == [(1, True, True)]
    assert query("SELECT count(*) FROM dead_letter WHERE run_id = :run", run=summary["run_id"]) == [(0,)]

    kafka_stopped.start()
    reset_runtime()
    relayed = publish_pending_events(get_runtime().engine, get_runtime().producer)
    assert relayed.published >= 1
    again = publish_pending_events(get_runtime().engine, get_runtime().producer)
    assert again.published == 0
    messages = events.read_all(key=spec.study_uid, settled=lambda: outbox_published(spec.study_uid))
    assert [m.value["study"]["version"] for m in messages] == [1]
    assert query(
        "SELECT count(*) FROM outbox WHERE study_instance_uid = :uid AND published_at IS NULL", uid=spec.study_uid
    ) == [(0,)]


def test_bad_instance_in_a_large_study_is_named_and_nothing_is_written(stack_settings: Settings) -> None:
    spec = plan_studies(
        SeedPlan(
            studies=1,
            modalities=("CT",),
            series_per_study=1,
            instances_per_series=40,
            rows=16,
            columns=16,
            seed=unique_seed(),
        )
    )[0]
    datasets = list(build_instances(spec))
    datasets[7].SOPInstanceUID = datasets[7].SOPInstanceUID + "\x01"
    instance_ids = upload(stack_settings, datasets)
    summary = ingest(orthanc_study_id(stack_settings, spec.study_uid))

    assert summary["status"] == "failed"
    assert query("SELECT error_type, instance FROM dead_letter WHERE run_id = :run", run=summary["run_id"]) == [
        ("InvalidDicom", instance_ids[7])
    ]
    assert query("SELECT count(*) FROM study WHERE study_instance_uid = :uid", uid=spec.study_uid) == [(0,)]


def test_large_study_ingested_with_parallel_downloads_matches_orthanc(stack_settings: Settings) -> None:
    seeded, _ = seed_one(stack_settings, series=2, instances=20, size=32)
    summary = ingest(seeded.orthanc_id)
    assert summary["status"] == "created"
    assert summary["number_of_instances"] == 40
    assert query(
        "SELECT count(DISTINCT i.sop_instance_uid) FROM instance i JOIN study s ON s.id = i.study_id "
        "WHERE s.orthanc_id = :id",
        id=seeded.orthanc_id,
    ) == [(40,)]
