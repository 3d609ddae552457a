"""Facts for a version's event, read from the rows just written (the event is built in
domain/study_event.py), so the event says what the database says."""

from __future__ import annotations

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from dicom_pipeline.db.models import Instance, Series, Study, StudyVersion
from dicom_pipeline.domain.events import EventEnvelope, StudyEventContext
from dicom_pipeline.domain.study_event import SeriesFacts, StudyVersionFacts, study_version_event
from dicom_pipeline.storage.keys import study_prefix


def build_study_event(
    session: Session, study: Study, version: StudyVersion, context: StudyEventContext, *, follows_deletion: bool = False
) -> EventEnvelope:
    series_rows = session.scalars(
        select(Series)
        .where(Series.study_id == study.id, Series.number_of_instances > 0)
        .order_by(Series.series_number.nulls_last(), Series.series_instance_uid)
    ).all()
    facts = StudyVersionFacts(
        study_instance_uid=study.study_instance_uid,
        orthanc_id=study.orthanc_id,
        version=version.version,
        event_id=str(version.event_id),
        content_hash=version.content_hash,
        previous_content_hash=version.previous_content_hash,
        patient_id=study.patient_id,
        patient_name=study.patient_name,
        patient_birth_date=study.patient_birth_date,
        patient_birth_date_raw=study.patient_birth_date_raw,
        patient_sex=study.patient_sex,
        accession_number=study.accession_number,
        study_date=study.study_date,
        study_date_raw=study.study_date_raw,
        study_time=study.study_time,
        study_time_raw=study.study_time_raw,
        study_description=study.study_description,
        modalities=tuple(study.modalities_in_study or ()),
        number_of_series=study.number_of_series,
        number_of_instances=study.number_of_instances,
        added=tuple(version.added),
        removed=tuple(version.removed),
        changed=tuple(version.changed),
        follows_deletion=follows_deletion,
        warnings=_warnings(session, study.id),
        storage_prefix=study_prefix(study.study_instance_uid),
    )
    series = [
        SeriesFacts(
            series_instance_uid=s.series_instance_uid,
            modality=s.modality,
            series_number=s.series_number,
            series_description=s.series_description,
            body_part_examined=s.body_part_examined,
            number_of_instances=s.number_of_instances,
        )
        for s in series_rows
    ]
    return study_version_event(facts, series, context)


def _warnings(session: Session, study_id: int) -> tuple[str, ...]:
    """Each kind of issue among the study's current instances, with how many have it."""
    issue = func.jsonb_array_elements_text(Instance.issues).table_valued("value").render_derived()
    rows = session.execute(
        select(issue.c.value, func.count())
        .select_from(Instance)
        .join(issue, true())
        .where(Instance.study_id == study_id)
        .group_by(issue.c.value)
        .order_by(issue.c.value)
    ).all()
    return tuple(f"{text} ({count} instance(s))" for text, count in rows)
