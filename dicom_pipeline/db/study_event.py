"""The study version event, built from the rows just written so it says what the database says."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dicom_pipeline.db.models import Series, Study, StudyVersion
from dicom_pipeline.domain.events import (
    SCHEMA_VERSION,
    EventEnvelope,
    StudyEventContext,
    event_headers,
    patient_block,
    utc_now_iso,
    validate_payload,
)


def build_study_event(
    session: Session, study: Study, version: StudyVersion, context: StudyEventContext
) -> EventEnvelope:
    series_rows = session.scalars(
        select(Series)
        .where(Series.study_id == study.id, Series.number_of_instances > 0)
        .order_by(Series.series_number.nulls_last(), Series.series_instance_uid)
    ).all()
    event_type = "study.created" if version.version == 1 else "study.updated"
    payload: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": str(version.event_id),
        "event_type": event_type,
        "occurred_at": utc_now_iso(),
        "correlation_id": context.correlation_id,
        "trigger": context.trigger,
        "phi_profile": context.phi_profile,
        "study": {
            "study_instance_uid": study.study_instance_uid,
            "orthanc_id": study.orthanc_id,
            "version": version.version,
            "content_hash": version.content_hash,
            "previous_content_hash": version.previous_content_hash,
            "patient": patient_block(
                {
                    "patient_id": study.patient_id,
                    "patient_name": study.patient_name,
                    "patient_birth_date": (
                        study.patient_birth_date.isoformat()
                        if study.patient_birth_date
                        else study.patient_birth_date_raw
                    ),
                    "patient_sex": study.patient_sex,
                },
                context.phi_profile,
                context.phi_hash_key,
            ),
            "accession_number": study.accession_number,
            "study_date": study.study_date.isoformat() if study.study_date else study.study_date_raw,
            "study_time": study.study_time.isoformat() if study.study_time else study.study_time_raw,
            "study_description": study.study_description,
            "modalities": list(study.modalities_in_study or []),
            "number_of_series": study.number_of_series,
            "number_of_instances": study.number_of_instances,
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
            for s in series_rows
        ],
        "storage": {
            "backend": context.storage_backend,
            "location": f"{context.storage_location.rstrip('/')}/{study.study_instance_uid}/",
        },
        "changes": {"added": list(version.added), "removed": list(version.removed), "changed": list(version.changed)},
    }
    validate_payload("dicom.metadata.v1", payload)
    return EventEnvelope(
        event_id=str(version.event_id),
        topic=context.topic,
        key=study.study_instance_uid,
        payload=payload,
        headers=event_headers(context.correlation_id, event_type),
    )
