"""The events' CloudEvents attributes and schema choice (pure logic; the registry itself is
exercised in tests/integration/test_schema_registry.py)."""

from __future__ import annotations

import json
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event

from dicom_pipeline.kafka.cloudevents import cloudevent_headers, event_source
from dicom_pipeline.kafka.contract import DEAD_LETTERS, STUDY_EVENTS, schema_of, subjects
from dicom_pipeline.settings import Settings

STUDY_EVENT: dict[str, Any] = {
    "event_id": "0b7d2c9e-6a1f-5d3e-9c4b-2f8e1a7d6c5b",
    "event_type": "study.created",
    "occurred_at": "2026-12-03T10:00:00.123456+00:00",
    "study": {"study_instance_uid": "1.2.826.0.1.3680043.8.498.1"},
}
DEAD_LETTER: dict[str, Any] = {
    "event_id": "5f0c9d8e-1a2b-5c3d-8e4f-6a7b8c9d0e1f",
    "event_type": "ingestion.failed",
    "occurred_at": "2026-12-03T10:00:01+00:00",
    "study_instance_uid": None,
}


def test_the_source_names_the_orthanc_it_reads_and_never_its_credentials() -> None:
    settings = Settings(orthanc_url="https://user:secret@pacs.example.org:8042/orthanc")
    assert event_source(settings) == "urn:dicom-pipeline:orthanc:pacs.example.org:8042"
    assert event_source(Settings(event_source="urn:hospital-a:imaging")) == "urn:hospital-a:imaging"


def test_a_study_event_parses_as_a_binary_mode_cloudevent_with_the_study_as_subject() -> None:
    headers = cloudevent_headers(
        STUDY_EVENT["event_id"], STUDY_EVENT, source="urn:x", dataschema="http://registry/schemas/ids/1"
    )
    value = json.dumps(STUDY_EVENT).encode()
    event = from_binary_event(KafkaMessage(dict(headers), b"1.2.826.0.1.3680043.8.498.1", value))
    assert event.get_id() == STUDY_EVENT["event_id"]
    assert event.get_type() == "org.dicom-pipeline.study.created"
    assert event.get_subject() == "1.2.826.0.1.3680043.8.498.1"
    assert event.get_source() == "urn:x"
    assert event.get_dataschema() == "http://registry/schemas/ids/1"
    assert event.get_datacontenttype() == "application/json"
    time = event.get_time()
    assert time is not None and time.isoformat() == STUDY_EVENT["occurred_at"]
    assert event.get_data() == STUDY_EVENT


def test_a_dead_letter_without_a_study_has_no_subject_attribute() -> None:
    names = [name for name, _ in cloudevent_headers(DEAD_LETTER["event_id"], DEAD_LETTER, source="s", dataschema="d")]
    assert "ce_subject" not in names
    assert {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_dataschema", "content-type"} <= set(names)


def test_the_schema_follows_the_payload_kind_and_the_subjects_follow_the_topics() -> None:
    assert schema_of(STUDY_EVENT) == STUDY_EVENTS
    assert schema_of(DEAD_LETTER) == DEAD_LETTERS
    settings = Settings(kafka_topic="site.events", kafka_dlq_topic="site.dlq")
    assert subjects(settings) == {"site.events-value": STUDY_EVENTS, "site.dlq-value": DEAD_LETTERS}
