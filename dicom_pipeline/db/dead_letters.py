"""Dead letters: the database row and its outbox event, written together."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from dicom_pipeline.db.models import DeadLetter, OrthancStudySeen, Study, StudyVersion
from dicom_pipeline.db.repository import enqueue_event
from dicom_pipeline.domain.content import dead_letter_event_id
from dicom_pipeline.domain.events import (
    DEAD_LETTER_SCHEMA_VERSION,
    EventEnvelope,
    dead_letter_payload,
    event_headers,
)
from dicom_pipeline.domain.identifiers import is_orthanc_id


@dataclass(frozen=True)
class DeadLetterInput:
    correlation_id: str
    trigger: str | None
    study_instance_uid: str | None
    orthanc_id: str | None
    instance: str | None
    run_id: str | None
    failed_op: str
    error_type: str
    error_message: str
    transient: bool
    attempts: int


def record_dead_letter(
    session: Session, letter: DeadLetterInput, topic: str, *, ingested_since: dt.datetime | None = None
) -> tuple[int, str]:
    """Insert the dead letter and its outbox event; returns (dead letter id, event id).

    `ingested_since` is for letters written after the fact (a failed run noticed later):
    if the study has been ingested since that time, by a retry or another trigger, the
    letter is recorded already resolved. The study's lock makes this exact against an
    ingestion committing at the same moment (which resolves letters under the same lock).
    """
    if letter.orthanc_id is not None and not is_orthanc_id(letter.orthanc_id):
        # A malformed id is often the very error being recorded: it stays in the message,
        # never in the id column (or the re-drive that reads it).
        letter = replace(letter, orthanc_id=None)
    row = DeadLetter(**letter.__dict__)
    row.error_message = letter.error_message[:2000]
    if letter.orthanc_id is not None:
        _lock_orthanc_study(session, letter.orthanc_id)
        if ingested_since is not None and _ingested_since(session, letter.orthanc_id, ingested_since):
            row.resolved_at = func.now()
    session.add(row)
    session.flush()
    event_id = dead_letter_event_id(row.id)
    payload = dead_letter_payload(event_id=event_id, dead_letter_id=row.id, **letter.__dict__)
    key = letter.study_instance_uid or letter.orthanc_id or letter.run_id or str(row.id)
    enqueue_event(
        session,
        EventEnvelope(
            event_id,
            topic,
            key,
            payload,
            event_headers(letter.correlation_id, "ingestion.failed", DEAD_LETTER_SCHEMA_VERSION),
        ),
        study_uid=letter.study_instance_uid,
        event_date=None,
    )
    return row.id, event_id


def has_dead_letter_for_run(session: Session, run_id: str) -> bool:
    return session.scalars(select(DeadLetter.id).where(DeadLetter.run_id == run_id).limit(1)).first() is not None


def resolve_dead_letters(session: Session, study_uid: str | None, orthanc_id: str | None) -> int:
    """Mark open dead letters of a study resolved once it has ingested successfully."""
    conditions = []
    if study_uid:
        conditions.append(DeadLetter.study_instance_uid == study_uid)
    if orthanc_id:
        conditions.append(DeadLetter.orthanc_id == orthanc_id)
    if not conditions:
        return 0
    if orthanc_id:
        _lock_orthanc_study(session, orthanc_id)
    result = session.execute(
        update(DeadLetter).where(DeadLetter.resolved_at.is_(None), or_(*conditions)).values(resolved_at=func.now())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _lock_orthanc_study(session: Session, orthanc_id: str) -> None:
    # Taken after the per-study-uid lock of record_study_version, never before it.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:id, 11))"), {"id": orthanc_id})


def _ingested_since(session: Session, orthanc_id: str, since: dt.datetime) -> bool:
    """Whether a run has ended well for this study since then: read it (even unchanged), or
    recorded a version, a deletion included (a deletion reads nothing to mark as seen)."""
    seen_at = session.scalar(select(OrthancStudySeen.seen_at).where(OrthancStudySeen.orthanc_id == orthanc_id))
    if seen_at is not None and seen_at >= since:
        return True
    recorded = session.scalar(
        select(StudyVersion.id)
        .join(Study, Study.id == StudyVersion.study_id)
        .where(Study.orthanc_id == orthanc_id, StudyVersion.created_at >= since)
        .limit(1)
    )
    return recorded is not None
