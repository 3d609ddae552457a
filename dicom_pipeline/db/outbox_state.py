"""What waits in the outbox, read through its partial index of pending rows (cheap at any size)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dicom_pipeline.db.models import Outbox


@dataclass(frozen=True)
class PendingEvents:
    count: int
    oldest_age_seconds: float | None


def pending_events(session: Session) -> PendingEvents:
    count, oldest = session.execute(
        select(func.count(), func.extract("epoch", func.now() - func.min(Outbox.created_at))).where(
            Outbox.published_at.is_(None)
        )
    ).one()
    return PendingEvents(int(count or 0), float(oldest) if oldest is not None else None)
