"""Send pending outbox rows to Kafka and mark them published only after the broker's ack.

An adapter: it publishes and reports what was delivered, and knows nothing of studies,
requests or dead letters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, update

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.models import Outbox
from dicom_pipeline.domain.events import EventEnvelope
from dicom_pipeline.errors import EventPublishError
from dicom_pipeline.kafka.producer import EventProducer


@dataclass(frozen=True)
class PublishResult:
    published: int
    failed: int
    event_ids: tuple[str, ...]


def publish_pending_events(
    engine: Engine,
    producer: EventProducer,
    *,
    study_uid: str | None = None,
    event_ids: list[str] | None = None,
    batch_size: int = 500,
    raise_on_failure: bool = True,
) -> PublishResult:
    """Publish pending rows, oldest first, in batches until none is left.

    Rows are claimed with FOR UPDATE SKIP LOCKED and stay locked until their publish is
    recorded, so the relay and a study run never send the same row at the same time.
    """
    published: list[str] = []
    failed = 0
    while True:
        with transaction(engine) as session:
            query = select(Outbox).where(Outbox.published_at.is_(None))
            if study_uid is not None:
                query = query.where(Outbox.study_instance_uid == study_uid)
            if event_ids is not None:
                query = query.where(Outbox.event_id.in_([uuid.UUID(e) for e in event_ids]))
            rows = session.scalars(query.order_by(Outbox.id).limit(batch_size).with_for_update(skip_locked=True)).all()
            if not rows:
                break
            report = producer.send(
                [EventEnvelope(str(r.event_id), r.topic, r.message_key, r.payload, r.headers) for r in rows]
            )
            delivered = [r for r in rows if str(r.event_id) in report.delivered]
            if delivered:
                session.execute(
                    update(Outbox).where(Outbox.id.in_([r.id for r in delivered])).values(published_at=func.now())
                )
            for row in rows:
                error = report.failed.get(str(row.event_id))
                if error is not None:
                    row.publish_attempts += 1
                    row.last_error = error[:1000]
            published.extend(str(r.event_id) for r in rows if str(r.event_id) in report.delivered)
            failed += len(report.failed)
        if report.failed or len(rows) < batch_size:
            break
    if failed and raise_on_failure:
        raise EventPublishError(f"{failed} event(s) not acknowledged by Kafka; they stay in the outbox")
    return PublishResult(published=len(published), failed=failed, event_ids=tuple(published))
