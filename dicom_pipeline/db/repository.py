"""Study versions: the one place that decides whether content is new, and records it.

Everything a version consists of - study, series and instance rows, the version row and
its outbox event - is written in one transaction, under a per-study advisory lock, so
concurrent runs of one study produce one version, and a failure leaves no partial rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dicom_pipeline.db.models import Instance, OrthancStudySeen, Outbox, Series, Study, StudyVersion
from dicom_pipeline.db.study_event import build_study_event
from dicom_pipeline.domain.content import ContentDiff, content_hash, diff_content, study_event_id
from dicom_pipeline.domain.events import EventEnvelope, StudyEventContext
from dicom_pipeline.domain.metadata import ExtractedStudy, StudyAttributes
from dicom_pipeline.domain.study_event import StudyDeletionFacts, study_deleted_event

Status = Literal["created", "updated", "unchanged", "superseded", "deleted"]


@dataclass(frozen=True)
class KnownInstance:
    sop_instance_uid: str
    series_instance_uid: str
    orthanc_file_uuid: str | None
    sha256: str
    size_bytes: int
    storage_key: str


@dataclass(frozen=True)
class VersionOutcome:
    status: Status
    study_instance_uid: str
    version: int
    content_hash: str
    event_id: str | None
    number_of_series: int
    number_of_instances: int
    added: int
    removed: int
    changed: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def lock_study(session: Session, study_uid: str) -> None:
    """Serialise every writer of one study until the transaction ends."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:uid, 7))"), {"uid": study_uid})


def known_instances(session: Session, study_uid: str) -> dict[str, KnownInstance]:
    rows = session.execute(
        select(
            Instance.sop_instance_uid,
            Series.series_instance_uid,
            Instance.orthanc_file_uuid,
            Instance.sha256,
            Instance.size_bytes,
            Instance.storage_key,
        )
        .join(Series, Instance.series_id == Series.id)
        .join(Study, Instance.study_id == Study.id)
        .where(Study.study_instance_uid == study_uid)
    ).all()
    return {row[0]: KnownInstance(*row) for row in rows}


def record_study_version(session: Session, extracted: ExtractedStudy, context: StudyEventContext) -> VersionOutcome:
    study_uid = extracted.study_instance_uid
    study, latest = _locked_study(session, study_uid)
    current = extracted.content
    new_hash = content_hash(current)
    if latest is not None and study is not None:
        if latest.content_hash == new_hash:
            return _outcome("unchanged", study, latest, None)
        if _is_stale(extracted.orthanc_last_update, study.orthanc_last_update):
            # This run read Orthanc before a run that has already committed: its view is
            # older, so recording it would regress the study.
            return _outcome("superseded", study, latest, None)

    if study is None:
        if extracted.study is None:
            raise ValueError(f"study {study_uid} is new but no instance header was extracted")
        study = Study(study_instance_uid=study_uid, current_version=0, modalities_in_study=[])
        session.add(study)
    follows_deletion = latest is not None and latest.deleted
    if follows_deletion:
        # Sent again after Orthanc had deleted it: new content, announced as created.
        study.deleted_at = study.deleted_by_trigger = study.deleted_correlation_id = None
    if extracted.study is not None:
        _apply_study_attributes(study, extracted.study)
    study.orthanc_id = extracted.orthanc_id
    study.orthanc_last_update = extracted.orthanc_last_update
    session.flush()

    series_ids = _upsert_series(session, study.id, extracted)
    previous_content: dict[str, str] = dict(latest.content) if latest is not None else {}
    diff = diff_content(previous_content, current)
    version_number = (latest.version if latest is not None else 0) + 1
    _upsert_instances(session, study.id, series_ids, extracted, version_number)
    if diff.removed:
        session.execute(
            delete(Instance).where(Instance.study_id == study.id, Instance.sop_instance_uid.in_(diff.removed))
        )
    _refresh_counts(session, study)

    event_id = study_event_id(study_uid, version_number, new_hash)
    version = StudyVersion(
        study_id=study.id,
        version=version_number,
        content_hash=new_hash,
        previous_content_hash=latest.content_hash if latest is not None else None,
        number_of_instances=len(current),
        content=current,
        added=list(diff.added),
        removed=list(diff.removed),
        changed=list(diff.changed),
        event_id=uuid.UUID(event_id),
        run_id=context.run_id,
        correlation_id=context.correlation_id,
        trigger=context.trigger,
    )
    session.add(version)
    study.current_version = version_number
    study.updated_at = func.now()
    session.flush()

    envelope = build_study_event(session, study, version, context, follows_deletion=follows_deletion)
    enqueue_event(session, envelope, study_uid=study_uid, event_date=study.study_date)
    created = version_number == 1 or follows_deletion
    return _outcome("created" if created else "updated", study, version, event_id, diff)


def study_uid_of_orthanc_id(session: Session, orthanc_id: str) -> str | None:
    """The Study Instance UID the database holds for an Orthanc study id, if it holds one."""
    return session.scalar(select(Study.study_instance_uid).where(Study.orthanc_id == orthanc_id).limit(1))


def record_study_deletion(
    session: Session, orthanc_id: str, context: StudyEventContext, *, raw_files: Literal["kept", "deleted"]
) -> VersionOutcome | None:
    """Orthanc no longer holds this study: record the deletion as the study's next version.

    None when the database never held the study. A study already marked deleted gets no
    second version or event (the outcome says "deleted" with no event id). The deletion
    version has empty content and lists every earlier instance as removed; instance rows
    go, the study and series rows stay (marked), so history and lineage remain.
    """
    study_uid = study_uid_of_orthanc_id(session, orthanc_id)
    if study_uid is None:
        return None
    study, latest = _locked_study(session, study_uid)
    if study is None or latest is None:  # a study row is only ever written with its first version
        raise ValueError(f"study {study_uid} has no version")
    if latest.deleted:
        return _outcome("deleted", study, latest, None)

    deleted_at = dt.datetime.now(dt.UTC)
    empty_hash = content_hash({})
    version_number = latest.version + 1
    event_id = study_event_id(study_uid, version_number, empty_hash)
    removed = tuple(sorted(latest.content))
    version = StudyVersion(
        study_id=study.id,
        version=version_number,
        content_hash=empty_hash,
        previous_content_hash=latest.content_hash,
        number_of_instances=0,
        content={},
        added=[],
        removed=list(removed),
        changed=[],
        event_id=uuid.UUID(event_id),
        run_id=context.run_id,
        correlation_id=context.correlation_id,
        trigger=context.trigger,
        deleted=True,
    )
    session.add(version)
    session.execute(delete(Instance).where(Instance.study_id == study.id))
    _refresh_counts(session, study)
    study.current_version = version_number
    study.deleted_at = deleted_at
    study.deleted_by_trigger = context.trigger
    study.deleted_correlation_id = context.correlation_id
    # In Orthanc's LastUpdate form: a run that read the study before it was deleted now
    # reads as stale (`superseded`) instead of bringing it back.
    study.orthanc_last_update = deleted_at.strftime("%Y%m%dT%H%M%S")
    study.updated_at = func.now()
    # The next time Orthanc holds this study it is new content, never "already ingested".
    session.execute(delete(OrthancStudySeen).where(OrthancStudySeen.study_instance_uid == study_uid))
    session.flush()
    facts = StudyDeletionFacts(
        study_instance_uid=study_uid,
        orthanc_id=orthanc_id,
        version=version_number,
        event_id=event_id,
        last_version=latest.version,
        last_content_hash=latest.content_hash,
        deleted_at=deleted_at,
        removed=removed,
        raw_files=raw_files,
    )
    enqueue_event(session, study_deleted_event(facts, context), study_uid=study_uid, event_date=study.study_date)
    return _outcome("deleted", study, version, event_id, ContentDiff(added=(), removed=removed, changed=()))


def _locked_study(session: Session, study_uid: str) -> tuple[Study | None, StudyVersion | None]:
    """The study and its latest version, the study locked until the transaction ends."""
    lock_study(session, study_uid)
    study = session.scalars(select(Study).where(Study.study_instance_uid == study_uid).with_for_update()).first()
    if study is None:
        return None, None
    latest = session.scalars(
        select(StudyVersion).where(StudyVersion.study_id == study.id).order_by(StudyVersion.version.desc()).limit(1)
    ).first()
    return study, latest


def enqueue_event(session: Session, envelope: EventEnvelope, *, study_uid: str | None, event_date: Any) -> None:
    """The outbox row: written in the caller's transaction, sent later by the publisher."""
    session.add(
        Outbox(
            event_id=uuid.UUID(envelope.event_id),
            topic=envelope.topic,
            message_key=envelope.key,
            payload=envelope.payload,
            headers=envelope.headers,
            study_instance_uid=study_uid,
            event_date=event_date,
            publish_attempts=0,
        )
    )


def record_orthanc_seen(
    session: Session, orthanc_id: str, study_uid: str, last_update: str | None, *, stable: bool
) -> None:
    """Remember Orthanc's LastUpdate as of this ingestion, so reconciliation can skip the study."""
    statement = insert(OrthancStudySeen).values(
        orthanc_id=orthanc_id, study_instance_uid=study_uid, last_update=last_update, stable_when_seen=stable
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["orthanc_id"],
            set_={
                "study_instance_uid": study_uid,
                "last_update": last_update,
                "stable_when_seen": stable,
                "seen_at": func.now(),
            },
            # An older run finishing late must not move the mark backwards.
            where=(OrthancStudySeen.last_update.is_(None)) | (OrthancStudySeen.last_update <= last_update),
        )
    )


def _is_stale(extracted: str | None, stored: str | None) -> bool:
    # Orthanc's LastUpdate is "YYYYMMDDTHHMMSS", so text order is time order.
    return bool(extracted and stored and extracted < stored)


def _apply_study_attributes(study: Study, attrs: StudyAttributes) -> None:
    study.patient_id = attrs.patient_id
    study.patient_name = attrs.patient_name
    study.patient_birth_date = attrs.patient_birth_date.date
    study.patient_birth_date_raw = attrs.patient_birth_date.raw
    study.patient_sex = attrs.patient_sex
    study.accession_number = attrs.accession_number
    study.study_date = attrs.study_date.date
    study.study_date_raw = attrs.study_date.raw
    study.study_time = attrs.study_time.time
    study.study_time_raw = attrs.study_time.raw
    study.study_description = attrs.study_description
    study.referring_physician_name = attrs.referring_physician_name
    study.specific_character_set = attrs.specific_character_set


def _upsert_series(session: Session, study_id: int, extracted: ExtractedStudy) -> dict[str, int]:
    for attrs in extracted.series.values():
        values = {
            "study_id": study_id,
            "series_instance_uid": attrs.series_instance_uid,
            "modality": attrs.modality,
            "series_number": attrs.series_number,
            "series_description": attrs.series_description,
            "body_part_examined": attrs.body_part_examined,
            "number_of_instances": 0,
        }
        statement = insert(Series).values(**values)
        session.execute(
            statement.on_conflict_do_update(
                constraint="uq_series_study_id",
                set_={key: statement.excluded[key] for key in values if key not in ("study_id", "number_of_instances")}
                | {"updated_at": func.now()},
            )
        )
    rows = session.execute(select(Series.series_instance_uid, Series.id).where(Series.study_id == study_id)).all()
    return {uid: series_id for uid, series_id in rows}  # noqa: C416 - rows are Row objects


def _upsert_instances(
    session: Session, study_id: int, series_ids: dict[str, int], extracted: ExtractedStudy, version: int
) -> None:
    rows = [
        {
            "study_id": study_id,
            "series_id": series_ids[record.series_instance_uid],
            "sop_instance_uid": record.sop_instance_uid,
            "sop_class_uid": record.sop_class_uid,
            "instance_number": record.instance_number,
            "transfer_syntax_uid": record.transfer_syntax_uid,
            "rows": record.rows,
            "columns": record.columns,
            "number_of_frames": record.number_of_frames,
            "size_bytes": record.size_bytes,
            "sha256": record.sha256,
            "storage_key": record.storage_key,
            "orthanc_id": record.orthanc_id,
            "orthanc_file_uuid": record.orthanc_file_uuid,
            "header": record.header or {},
            "issues": list(record.issues),
            "first_version": version,
        }
        for record in extracted.new_records
    ]
    if not rows:
        return
    # One statement, many parameter sets: SQLAlchemy compiles it once (cached) and sends
    # the rows in multi-row batches ("insertmanyvalues"); building one VALUES clause of
    # thousands of bound parameters instead cost more than PostgreSQL's work.
    statement = insert(Instance)
    updatable = [key for key in rows[0] if key not in ("study_id", "sop_instance_uid", "first_version")]
    session.execute(
        statement.on_conflict_do_update(
            constraint="uq_instance_study_id",
            set_={key: statement.excluded[key] for key in updatable} | {"updated_at": func.now()},
        ),
        rows,
    )


def _refresh_counts(session: Session, study: Study) -> None:
    counts = dict(
        session.execute(
            select(Instance.series_id, func.count()).where(Instance.study_id == study.id).group_by(Instance.series_id)
        ).all()
    )
    series_rows = session.scalars(select(Series).where(Series.study_id == study.id)).all()
    for series in series_rows:
        series.number_of_instances = counts.get(series.id, 0)
    live = [s for s in series_rows if s.number_of_instances > 0]
    study.number_of_series = len(live)
    study.number_of_instances = sum(s.number_of_instances for s in live)
    study.modalities_in_study = sorted({s.modality for s in live if s.modality})


def _outcome(
    status: Status, study: Study, version: StudyVersion, event_id: str | None, diff: ContentDiff | None = None
) -> VersionOutcome:
    return VersionOutcome(
        status=status,
        study_instance_uid=study.study_instance_uid,
        version=version.version,
        content_hash=version.content_hash,
        event_id=event_id,
        number_of_series=study.number_of_series,
        number_of_instances=study.number_of_instances,
        added=len(diff.added) if diff else 0,
        removed=len(diff.removed) if diff else 0,
        changed=len(diff.changed) if diff else 0,
    )
