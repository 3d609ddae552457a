"""Reading dead letters for operators."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from dicom_pipeline.db.models import DeadLetter


def list_dead_letters(
    session: Session, *, include_resolved: bool = False, letter_id: int | None = None
) -> Sequence[DeadLetter]:
    query = select(DeadLetter).order_by(DeadLetter.id)
    if letter_id is not None:
        query = query.where(DeadLetter.id == letter_id)
    elif not include_resolved:
        query = query.where(DeadLetter.resolved_at.is_(None))
    return session.scalars(query).all()
