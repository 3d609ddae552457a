"""The study version event (`dicom.metadata.v1`): built from plain facts, no I/O.

The repository gathers the facts from the rows it has just written (so the event says what
the database says) and hands them here; the payload's shape and its PHI profile live in
the domain, next to the schema it must satisfy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dicom_pipeline.domain.events import (
    SCHEMA_VERSION,
    EventEnvelope,
    StudyEventContext,
    event_headers,
    patient_block,
    utc_now_iso,
    validate_payload,
)


@dataclass(frozen=True)
class SeriesFacts:
    series_instance_uid: str
    modality: str | None
    series_number: int | None
    series_description: str | None
    body_part_examined: str | None
    number_of_instances: int


@dataclass(frozen=True)
class StudyVersionFacts:
    study_instance_uid: str
    orthanc_id: str | None
    version: int
    event_id: str
    content_hash: str
    previous_content_hash: str | None
    patient_id: str | None
    patient_name: str | None
    patient_birth_date: dt.date | None
    patient_birth_date_raw: str | None
    patient_sex: str | None
    accession_number: str | None
    study_date: dt.date | None
    study_date_raw: str | None
    study_time: dt.time | None
    study_time_raw: str | None
    study_description: str | None
    modalities: tuple[str, ...]
    number_of_series: int
    number_of_instances: int
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    storage_prefix: str  # the study's folder in the raw store, "<key component>/" (storage/keys.py)
    follows_deletion: bool = False  # the study comes back after Orthanc had deleted it
    warnings: tuple[str, ...] = ()  # what in the study does not conform (kept as found)


@dataclass(frozen=True)
class StudyDeletionFacts:
    study_instance_uid: str
    orthanc_id: str | None
    version: int  # the deletion's own version
    event_id: str
    last_version: int
    last_content_hash: str
    deleted_at: dt.datetime
    removed: tuple[str, ...]
    raw_files: Literal["kept", "deleted"]


def study_deleted_event(facts: StudyDeletionFacts, context: StudyEventContext) -> EventEnvelope:
    """`study.deleted`: Orthanc no longer holds the study. No PHI: consumers drop by UID."""
    body: dict[str, Any] = {
        "study": {
            "study_instance_uid": facts.study_instance_uid,
            "orthanc_id": facts.orthanc_id,
            "version": facts.version,
            "last_version": facts.last_version,
            "last_content_hash": facts.last_content_hash,
            "deleted_at": facts.deleted_at.isoformat(),
            "removed": list(facts.removed),
        },
        "raw_files": facts.raw_files,
    }
    return _study_event("study.deleted", facts.event_id, facts.study_instance_uid, body, context)


def study_version_event(
    facts: StudyVersionFacts, series: Sequence[SeriesFacts], context: StudyEventContext
) -> EventEnvelope:
    """The event of one study version, validated against its published schema."""
    event_type = "study.created" if facts.version == 1 or facts.follows_deletion else "study.updated"
    body: dict[str, Any] = {
        "phi_profile": context.phi_profile,
        "study": {
            "study_instance_uid": facts.study_instance_uid,
            "orthanc_id": facts.orthanc_id,
            "version": facts.version,
            "content_hash": facts.content_hash,
            "previous_content_hash": facts.previous_content_hash,
            "patient": patient_block(
                {
                    "patient_id": facts.patient_id,
                    "patient_name": facts.patient_name,
                    "patient_birth_date": (
                        facts.patient_birth_date.isoformat()
                        if facts.patient_birth_date
                        else facts.patient_birth_date_raw
                    ),
                    "patient_sex": facts.patient_sex,
                },
                context.phi_profile,
                context.phi_hash_key,
            ),
            "accession_number": facts.accession_number,
            "study_date": facts.study_date.isoformat() if facts.study_date else facts.study_date_raw,
            "study_time": facts.study_time.isoformat() if facts.study_time else facts.study_time_raw,
            "study_description": facts.study_description,
            "modalities": list(facts.modalities),
            "number_of_series": facts.number_of_series,
            "number_of_instances": facts.number_of_instances,
        },
        "series": [
            {
                "series_instance_uid": s.series_instance_uid,
                "modality": s.modality,
                "series_number": s.series_number,
                "series_description": s.series_description,
                "body_part_examined": s.body_part_examined,
                "number_of_instances": s.number_of_instances,
            }
            for s in series
        ],
        "storage": {
            "backend": context.storage_backend,
            "location": f"{context.storage_location.rstrip('/')}/{facts.storage_prefix}",
        },
        "changes": {"added": list(facts.added), "removed": list(facts.removed), "changed": list(facts.changed)},
        "warnings": list(facts.warnings),
    }
    return _study_event(event_type, facts.event_id, facts.study_instance_uid, body, context)


def _study_event(
    event_type: str, event_id: str, study_uid: str, body: dict[str, Any], context: StudyEventContext
) -> EventEnvelope:
    """Every event of the topic: the common head, the type's body, checked against the
    published schema, keyed by the study so that one partition keeps its events in order."""
    payload: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": utc_now_iso(),
        "correlation_id": context.correlation_id,
        "trigger": context.trigger,
        **body,
    }
    validate_payload("dicom.metadata.v1", payload)
    return EventEnvelope(
        event_id=event_id,
        topic=context.topic,
        key=study_uid,
        payload=payload,
        headers=event_headers(context.correlation_id, event_type),
    )
