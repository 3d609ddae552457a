"""Tables of the pipeline's metadata database. Never raw DICOM or pixel data here."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(Text, unique=True)
    orthanc_id: Mapped[str | None] = mapped_column(String(44))
    orthanc_last_update: Mapped[str | None] = mapped_column(String(32))
    patient_id: Mapped[str | None] = mapped_column(Text)
    patient_name: Mapped[str | None] = mapped_column(Text)
    patient_birth_date: Mapped[dt.date | None] = mapped_column(Date)
    patient_birth_date_raw: Mapped[str | None] = mapped_column(Text)
    patient_sex: Mapped[str | None] = mapped_column(Text)
    accession_number: Mapped[str | None] = mapped_column(Text)
    study_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    study_date_raw: Mapped[str | None] = mapped_column(Text)
    study_time: Mapped[dt.time | None] = mapped_column(Time)
    study_time_raw: Mapped[str | None] = mapped_column(Text)
    study_description: Mapped[str | None] = mapped_column(Text)
    referring_physician_name: Mapped[str | None] = mapped_column(Text)
    specific_character_set: Mapped[str | None] = mapped_column(Text)
    modalities_in_study: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    number_of_series: Mapped[int] = mapped_column(Integer, default=0)
    number_of_instances: Mapped[int] = mapped_column(Integer, default=0)
    current_version: Mapped[int] = mapped_column(Integer, default=0)
    # Set when Orthanc no longer holds the study (the deletion is also a version, below);
    # cleared when the study is sent again.
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_by_trigger: Mapped[str | None] = mapped_column(String(64))
    deleted_correlation_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _now()


class Series(Base):
    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("study_id", "series_instance_uid"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(Text)
    modality: Mapped[str | None] = mapped_column(Text)
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str | None] = mapped_column(Text)
    body_part_examined: Mapped[str | None] = mapped_column(Text)
    number_of_instances: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _now()


class Instance(Base):
    __tablename__ = "instance"
    __table_args__ = (UniqueConstraint("study_id", "sop_instance_uid"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(Text)
    sop_class_uid: Mapped[str | None] = mapped_column(Text)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax_uid: Mapped[str | None] = mapped_column(Text)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(Text)
    orthanc_id: Mapped[str | None] = mapped_column(String(44))
    orthanc_file_uuid: Mapped[str | None] = mapped_column(String(36))
    header: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # What does not conform, kept as found (README, "Fidelity"); never values.
    issues: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"), default=list)
    first_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _now()


class StudyVersion(Base):
    __tablename__ = "study_version"
    __table_args__ = (UniqueConstraint("study_id", "version"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    previous_content_hash: Mapped[str | None] = mapped_column(String(64))
    number_of_instances: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict[str, str]] = mapped_column(JSONB)  # SOP Instance UID -> sha256
    added: Mapped[list[str]] = mapped_column(JSONB)
    removed: Mapped[list[str]] = mapped_column(JSONB)
    changed: Mapped[list[str]] = mapped_column(JSONB)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    run_id: Mapped[str | None] = mapped_column(String(64))
    correlation_id: Mapped[str] = mapped_column(String(128), index=True)
    trigger: Mapped[str | None] = mapped_column(String(64))
    # A deletion version: empty content, every earlier instance `removed`, event study.deleted.
    deleted: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), default=False)
    created_at: Mapped[dt.datetime] = _now()


class Outbox(Base):
    """Events written in the same transaction as the data they describe; the relay sends them."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "id", postgresql_where=text("published_at IS NULL")),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    topic: Mapped[str] = mapped_column(Text)
    message_key: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    study_instance_uid: Mapped[str | None] = mapped_column(Text, index=True)
    event_date: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = _now()
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    publish_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class DeadLetter(Base):
    __tablename__ = "dead_letter"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    study_instance_uid: Mapped[str | None] = mapped_column(Text, index=True)
    orthanc_id: Mapped[str | None] = mapped_column(String(44), index=True)
    instance: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    correlation_id: Mapped[str] = mapped_column(String(128))
    trigger: Mapped[str | None] = mapped_column(String(64))
    failed_op: Mapped[str] = mapped_column(Text)
    error_type: Mapped[str] = mapped_column(Text)
    error_message: Mapped[str] = mapped_column(Text)
    transient: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = _now()
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class IngestionRequest(Base):
    """A webhook call, recorded before it is answered, so no accepted request is ever lost."""

    __tablename__ = "ingestion_request"
    __table_args__ = (Index("ix_ingestion_request_unlaunched", "created_at", postgresql_where=text("run_id IS NULL")),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    orthanc_id: Mapped[str] = mapped_column(String(44), index=True)
    correlation_id: Mapped[str] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # accepted, launched, succeeded, failed
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    launch_attempts: Mapped[int] = mapped_column(Integer, default=0)
    study_instance_uid: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    # The study's Orthanc LastUpdate when the launcher looked: requests announcing the same
    # state share one run (see ingestion/requests.py).
    orthanc_last_update: Mapped[str | None] = mapped_column(String(32))
    # The W3C traceparent of the request's trace (dicom_pipeline/tracing.py), for its run's tags.
    traceparent: Mapped[str | None] = mapped_column(String(55))
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ingestion_request.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _now()


class OrthancStudySeen(Base):
    """What the last successful ingestion saw of a study in Orthanc (for reconciliation).

    Kept apart from `study` so that re-ingesting unchanged content changes no study row.
    """

    __tablename__ = "orthanc_study_seen"

    orthanc_id: Mapped[str] = mapped_column(String(44), primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(Text, index=True)
    last_update: Mapped[str | None] = mapped_column(String(32))
    # LastUpdate has one-second resolution: a study read while still unstable may have
    # received more instances within that second, so reconciliation looks at it again.
    stable_when_seen: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    seen_at: Mapped[dt.datetime] = _now()


class ReconcileCursor(Base):
    """Orthanc change-log sequence up to which reconciliation has looked (one row per name)."""

    __tablename__ = "reconcile_cursor"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = _now()


class RunHeartbeat(Base):
    """A Dagster run's worker saying it is alive (see dicom_pipeline/run_liveness.py).

    Dagster's default run launcher cannot tell that a worker was killed: without this the
    run would stay STARTED forever, its study neither ingested nor dead-lettered.
    """

    __tablename__ = "run_heartbeat"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_name: Mapped[str] = mapped_column(String(128))
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = _now()
    beat_at: Mapped[dt.datetime] = _now()


class RunStepOutput(Base):
    """What one op of a study run handed to the next (metadata only: the extracted headers,
    never a file), so a run re-executed from a failed op resumes where it stopped. Removed
    when the study's run succeeds; what failed runs leave is purged with their runs."""

    __tablename__ = "run_step_output"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    step_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    output_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    root_run_id: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
