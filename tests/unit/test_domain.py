"""Pure domain rules: identifiers, content hashes, diffs, event ids and payloads."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dicom_pipeline.domain.events import StudyEventContext
    from dicom_pipeline.domain.study_event import StudyVersionFacts

import datetime as dt

import pytest

from dicom_pipeline.dicom.values import parse_da, parse_tm
from dicom_pipeline.domain.content import content_hash, dead_letter_event_id, diff_content, study_event_id
from dicom_pipeline.domain.events import dead_letter_payload, patient_block, validate_payload
from dicom_pipeline.domain.identifiers import (
    correlation_id_or_new,
    read_uid,
    uid_conforms,
    validate_orthanc_id,
)
from dicom_pipeline.errors import InvalidIdentifier, SchemaViolation
from dicom_pipeline.storage.keys import validate_key


@pytest.mark.parametrize("uid", ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.0113.1", "2.25.1234567890"])
def test_conforming_uids_are_read_as_they_are(uid: str) -> None:
    assert read_uid(uid + "\x00", "StudyInstanceUID") == uid and uid_conforms(uid)


@pytest.mark.parametrize("uid", ["1.2.abc", "../../etc/passwd", "1." + "2" * 70, "1..2", "1.2 3"])
def test_non_conforming_uids_are_kept_verbatim_but_do_not_conform(uid: str) -> None:
    assert read_uid(uid, "StudyInstanceUID") == uid and not uid_conforms(uid)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "StudyInstanceUID is missing"),
        ("", "StudyInstanceUID is missing"),
        ("\x00 ", "StudyInstanceUID is missing"),
        ("1.2\n3", "control characters"),
        ("1" * 1025, "longer than 1024"),
    ],
)
def test_uids_that_cannot_be_stored_are_refused_naming_the_attribute(value: object, message: str) -> None:
    with pytest.raises(InvalidIdentifier, match=message):
        read_uid(value, "StudyInstanceUID")


def test_orthanc_ids_must_have_orthancs_form() -> None:
    assert validate_orthanc_id("6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c")
    for bad in [
        "6EAB340E-5e10a3c7-c6c79b88-c662da39-824f4f3c",
        "abc",
        "6eab340e-5e10a3c7-c6c79b88-c662da39",
        "6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c/../x",
    ]:
        with pytest.raises(InvalidIdentifier):
            validate_orthanc_id(bad)


def test_malformed_correlation_ids_are_replaced_not_echoed() -> None:
    assert correlation_id_or_new("abc-123") == "abc-123"
    replaced = correlation_id_or_new("bad id\nwith newline")
    assert replaced != "bad id\nwith newline" and len(replaced) == 36


def test_content_hash_ignores_order_and_changes_with_any_file() -> None:
    a = {"1.1": "aa", "1.2": "bb"}
    assert content_hash(a) == content_hash(dict(reversed(list(a.items()))))
    assert content_hash(a) != content_hash({"1.1": "aa", "1.2": "bc"})
    assert content_hash(a) != content_hash({"1.1": "aa"})


def test_diff_lists_added_removed_and_changed() -> None:
    diff = diff_content({"1": "a", "2": "b", "3": "c"}, {"1": "a", "2": "x", "4": "d"})
    assert (diff.added, diff.removed, diff.changed) == (("4",), ("3",), ("2",))
    assert diff_content({"1": "a"}, {"1": "a"}).is_empty


def test_event_id_is_deterministic_per_study_version() -> None:
    assert study_event_id("1.2", 1, "ab") == study_event_id("1.2", 1, "ab")
    assert study_event_id("1.2", 1, "ab") != study_event_id("1.2", 2, "ab")
    assert study_event_id("1.2", 1, "ab") != study_event_id("1.3", 1, "ab")


def test_minimal_profile_drops_name_and_birth_date_and_hashes_patient_id() -> None:
    patient = {"patient_id": "P1", "patient_name": "Doe^Jane", "patient_birth_date": "1970-01-01", "patient_sex": "F"}
    minimal = patient_block(patient, "minimal", b"key")
    assert set(minimal) == {"patient_id", "patient_id_hashed", "patient_sex"}
    assert (
        minimal["patient_id"] != "P1"
        and minimal["patient_id"] == patient_block(patient, "minimal", b"key")["patient_id"]
    )
    assert patient_block(patient, "minimal", b"other")["patient_id"] != minimal["patient_id"]
    assert patient_block(patient, "full", b"key")["patient_name"] == "Doe^Jane"


def test_schema_violation_names_the_path() -> None:
    payload = dead_letter_payload(
        event_id="8a4f3c52-52b1-4d8e-9a0e-6d1c0b7f9e21",
        dead_letter_id=1,
        correlation_id="c",
        trigger=None,
        study_instance_uid=None,
        orthanc_id=None,
        instance=None,
        run_id=None,
        failed_op="extract_study",
        error_type="InvalidDicom",
        error_message="x",
        transient=False,
        attempts=1,
    )
    payload["attempts"] = 0
    with pytest.raises(SchemaViolation, match="attempts"):
        validate_payload("dicom.metadata.dlq", payload)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("20240301", dt.date(2024, 3, 1)), ("2024.03.01", dt.date(2024, 3, 1)), ("20241301", None), ("", None)],
)
def test_dates_are_typed_when_valid_and_raw_kept(raw: str, expected: dt.date | None) -> None:
    parsed = parse_da(raw)
    assert parsed.date == expected
    assert parsed.raw == (raw or None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("101500", dt.time(10, 15)),
        ("1015", dt.time(10, 15)),
        ("101500.123", dt.time(10, 15, 0, 123000)),
        ("10:15:00", dt.time(10, 15)),
        ("256100", None),
        ("noon", None),
    ],
)
def test_times_are_typed_when_valid(raw: str, expected: dt.time | None) -> None:
    assert parse_tm(raw).time == expected
    assert parse_tm(raw).raw == raw


@pytest.mark.parametrize("key", ["../1/2.dcm", "1.2/3.4/../5.dcm", "1.2/3.4/5.dcm/x", "/1/2/3.dcm", "1/2/.3.dcm"])
def test_storage_keys_cannot_escape_the_store(key: str) -> None:
    with pytest.raises(InvalidIdentifier):
        validate_key(key)


def _facts(version: int, **overrides: object) -> StudyVersionFacts:
    import datetime as dt

    from dicom_pipeline.domain.study_event import StudyVersionFacts

    values: dict[str, object] = {
        "study_instance_uid": "1.2.826.0.1.3680043.8.498.7",
        "orthanc_id": "6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c",
        "version": version,
        "event_id": "0b0e1b5c-6c4f-5d4e-9a52-3f1e2d3c4b5a",
        "content_hash": "a" * 64,
        "previous_content_hash": None if version == 1 else "b" * 64,
        "patient_id": "PAT-1",
        "patient_name": "Doe^Jane",
        "patient_birth_date": dt.date(1970, 1, 1),
        "patient_birth_date_raw": "19700101",
        "patient_sex": "F",
        "accession_number": "ACC-1",
        "study_date": None,
        "study_date_raw": "2024.13.45",
        "study_time": dt.time(12, 30),
        "study_time_raw": "1230",
        "study_description": "CT chest",
        "modalities": ("CT",),
        "number_of_series": 1,
        "number_of_instances": 2,
        "added": ("1.2.3.1", "1.2.3.2") if version == 1 else ("1.2.3.3",),
        "removed": () if version == 1 else ("1.2.3.1",),
        "changed": (),
        "storage_prefix": "1.2.826.0.1.3680043.8.498.7/",
    }
    values.update(overrides)
    return StudyVersionFacts(**values)  # type: ignore[arg-type]


def _context(profile: str) -> StudyEventContext:
    from dicom_pipeline.domain.events import StudyEventContext

    return StudyEventContext(
        run_id="run-1",
        correlation_id="corr-1",
        trigger="test",
        topic="dicom.metadata.v1",
        phi_profile=profile,  # type: ignore[arg-type]
        phi_hash_key=b"key",
        storage_backend="file",
        storage_location="file:///store",
    )


def test_study_event_is_built_in_the_domain_and_valid_for_both_profiles() -> None:
    from dicom_pipeline.domain.study_event import SeriesFacts, study_version_event

    series = [SeriesFacts("1.2.3", "CT", 1, "axial", "CHEST", 2)]
    created = study_version_event(_facts(1), series, _context("full"))
    assert created.payload["event_type"] == "study.created" and created.key == "1.2.826.0.1.3680043.8.498.7"
    assert created.payload["study"]["patient"]["patient_name"] == "Doe^Jane"
    # An invalid date keeps its raw text; a valid time is typed.
    assert created.payload["study"]["study_date"] == "2024.13.45"
    assert created.payload["study"]["study_time"] == "12:30:00"
    assert created.payload["storage"]["location"] == "file:///store/1.2.826.0.1.3680043.8.498.7/"
    assert created.headers == {"correlation_id": "corr-1", "event_type": "study.created", "schema_version": "1.1"}

    updated = study_version_event(_facts(2), series, _context("minimal"))
    assert updated.payload["event_type"] == "study.updated"
    assert updated.payload["changes"] == {"added": ["1.2.3.3"], "removed": ["1.2.3.1"], "changed": []}
    patient = updated.payload["study"]["patient"]
    assert "patient_name" not in patient and "patient_birth_date" not in patient
    assert str(patient["patient_id"]).startswith("hmac-sha256:")


def test_a_study_sent_again_after_its_deletion_is_announced_as_created() -> None:
    from dicom_pipeline.domain.study_event import study_version_event

    again = study_version_event(_facts(3, follows_deletion=True), [], _context("full"))
    assert again.payload["event_type"] == "study.created" and again.payload["study"]["version"] == 3


def test_deletion_event_is_valid_carries_no_phi_and_is_keyed_by_the_study() -> None:
    from dicom_pipeline.domain.study_event import StudyDeletionFacts, study_deleted_event

    facts = StudyDeletionFacts(
        study_instance_uid="1.2.826.0.1.3680043.8.498.7",
        orthanc_id="6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c",
        version=3,
        event_id=study_event_id("1.2.826.0.1.3680043.8.498.7", 3, content_hash({})),
        last_version=2,
        last_content_hash=content_hash({"1.2.3.1": "a" * 64}),
        deleted_at=dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC),
        removed=("1.2.3.1",),
        raw_files="kept",
    )
    event = study_deleted_event(facts, _context("full"))

    assert event.key == facts.study_instance_uid and event.topic == "dicom.metadata.v1"
    assert event.headers == {"correlation_id": "corr-1", "event_type": "study.deleted", "schema_version": "1.1"}
    assert event.payload["study"]["removed"] == ["1.2.3.1"] and event.payload["raw_files"] == "kept"
    assert "patient" not in event.payload["study"] and "Doe" not in str(event.payload)
    # The topic's schema holds each event type to its own shape.
    broken = {**event.payload, "study": {**event.payload["study"], "last_content_hash": "nope"}}
    with pytest.raises(SchemaViolation, match="last_content_hash"):
        validate_payload("dicom.metadata.v1", broken)
    with pytest.raises(SchemaViolation):
        validate_payload("dicom.metadata.v1", {**event.payload, "event_type": "study.updated"})


def test_dead_letters_keep_their_own_schema_version() -> None:
    from dicom_pipeline.domain.events import DEAD_LETTER_SCHEMA_VERSION

    payload = dead_letter_payload(
        event_id=dead_letter_event_id(1),
        dead_letter_id=1,
        correlation_id="corr-1",
        trigger="test",
        run_id=None,
        study_instance_uid=None,
        orthanc_id=None,
        instance=None,
        failed_op="extract_study",
        error_type="OrthancNotFound",
        error_message="gone",
        transient=False,
        attempts=1,
    )
    assert payload["schema_version"] == DEAD_LETTER_SCHEMA_VERSION == "1.0"
