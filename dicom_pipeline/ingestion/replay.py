"""Replay: re-publish stored events of a date range, same ids and payloads, for a consumer
that rebuilds its state. Nothing in the database changes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.models import Outbox
from dicom_pipeline.domain.events import EventEnvelope
from dicom_pipeline.errors import EventPublishError
from dicom_pipeline.runtime import Runtime


@dataclass(frozen=True)
class ReplayReport:
    published: int
    event_ids: tuple[str, ...]


def replay_events(
    runtime: Runtime,
    date_from: dt.date,
    date_to: dt.date,
    *,
    study_uid: str | None = None,
    topic: str | None = None,
    batch_size: int = 500,
) -> ReplayReport:
    """Events first recorded between the two days (inclusive, UTC), oldest first."""
    start = dt.datetime.combine(date_from, dt.time.min, tzinfo=dt.UTC)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    target = topic or runtime.settings.kafka_topic
    published: list[str] = []
    last_id = 0
    while True:
        with transaction(runtime.engine) as session:
            query = (
                select(Outbox)
                .where(
                    Outbox.topic == runtime.settings.kafka_topic,
                    Outbox.created_at >= start,
                    Outbox.created_at < end,
                    Outbox.id > last_id,
                )
                .order_by(Outbox.id)
                .limit(batch_size)
            )
            if study_uid is not None:
                query = query.where(Outbox.study_instance_uid == study_uid)
            rows = session.scalars(query).all()
        if not rows:
            break
        envelopes = [EventEnvelope(str(r.event_id), target, r.message_key, r.payload, r.headers) for r in rows]
        report = runtime.producer.send(envelopes)
        if report.failed:
            raise EventPublishError(f"replay stopped: {len(report.failed)} event(s) not acknowledged by Kafka")
        published.extend(e.event_id for e in envelopes)
        last_id = rows[-1].id
    return ReplayReport(published=len(published), event_ids=tuple(published))
