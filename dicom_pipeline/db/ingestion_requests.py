"""Webhook requests: recorded on arrival, launched as runs, finished by the run itself."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dicom_pipeline.db.models import IngestionRequest


def create_request(session: Session, orthanc_id: str, correlation_id: str, trigger: str) -> IngestionRequest:
    request = IngestionRequest(
        id=uuid.uuid4(),
        orthanc_id=orthanc_id,
        correlation_id=correlation_id,
        trigger=trigger,
        status="accepted",
        launch_attempts=0,
    )
    session.add(request)
    session.flush()
    return request


def get_request(session: Session, request_id: uuid.UUID) -> IngestionRequest | None:
    return session.get(IngestionRequest, request_id)


def claim_unlaunched(session: Session, limit: int) -> Sequence[IngestionRequest]:
    """Requests without a run, oldest first, locked so that two launchers never take the same one."""
    return session.scalars(
        select(IngestionRequest)
        .where(IngestionRequest.run_id.is_(None), IngestionRequest.status == "accepted")
        .order_by(IngestionRequest.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def mark_finished(
    session: Session,
    request_id: str,
    *,
    succeeded: bool,
    study_uid: str | None = None,
    version: int | None = None,
    outcome: str | None = None,
    error: str | None = None,
) -> None:
    """Record how the request's run ended.

    A failure never overwrites a success: a failed run can be reported after its retry (or
    a later trigger) already ingested the study, by the backstop sensor, and the request
    was served all the same.
    """
    try:
        key = uuid.UUID(request_id)
    except ValueError:
        return
    values = {
        "status": "succeeded" if succeeded else "failed",
        "study_instance_uid": study_uid,
        "version": version,
        "outcome": outcome,
        "error": error[:2000] if error else None,
        "updated_at": func.now(),
    }
    # Two statements on purpose: the first waits for a launcher that is attaching a
    # duplicate to this request (it holds the row FOR UPDATE), and the second, with a new
    # snapshot, then finds that duplicate too.
    for target in (IngestionRequest.id == key, IngestionRequest.duplicate_of == key):
        statement = update(IngestionRequest).where(target)
        if not succeeded:
            statement = statement.where(IngestionRequest.status != "succeeded")
        session.execute(statement.values(**values))
