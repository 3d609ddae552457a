"""Webhook requests: recorded on arrival, launched as runs, finished by the run itself."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dicom_pipeline.db.models import IngestionRequest, Instance, Study

# What Orthanc's deletion callbacks trigger (webhook /api/v1/ingestion/deletions).
DELETION_TRIGGER = "orthanc-deletion"


def create_request(
    session: Session, orthanc_id: str, correlation_id: str, trigger: str, traceparent: str | None = None
) -> IngestionRequest:
    request = IngestionRequest(
        id=uuid.uuid4(),
        orthanc_id=orthanc_id,
        correlation_id=correlation_id,
        trigger=trigger,
        status="accepted",
        launch_attempts=0,
        traceparent=traceparent,
    )
    session.add(request)
    session.flush()
    return request


def gather_deletion_notice(
    session: Session, study_orthanc_id: str, correlation_id: str, traceparent: str | None = None
) -> IngestionRequest:
    """The study's deletion request still waiting for its launch, or a new one.

    Joining a waiting request is safe: its run has not read Orthanc yet, so it will see
    this deletion too. A request that a launcher is claiming right now is skipped.
    """
    waiting = session.scalars(
        select(IngestionRequest)
        .where(
            IngestionRequest.orthanc_id == study_orthanc_id,
            IngestionRequest.trigger == DELETION_TRIGGER,
            IngestionRequest.status == "accepted",
            IngestionRequest.run_id.is_(None),
        )
        .order_by(IngestionRequest.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if waiting is None:
        return create_request(session, study_orthanc_id, correlation_id, DELETION_TRIGGER, traceparent)
    waiting.updated_at = func.now()  # restarts the settle time
    return waiting


def deletion_noticed(session: Session, study_orthanc_id: str) -> bool:
    """Whether Orthanc has told us (through the webhook) that it deleted this study or part of it."""
    return bool(
        session.scalar(
            select(IngestionRequest.id)
            .where(IngestionRequest.orthanc_id == study_orthanc_id, IngestionRequest.trigger == DELETION_TRIGGER)
            .limit(1)
        )
    )


def study_of_deleted_resource(session: Session, level: str, orthanc_id: str) -> str | None:
    """The Orthanc id of the study a deleted resource belonged to, as far as the database knows."""
    if level == "Study":
        return orthanc_id
    return session.scalar(
        select(Study.orthanc_id).join(Instance, Instance.study_id == Study.id).where(Instance.orthanc_id == orthanc_id)
    )


def get_request(session: Session, request_id: uuid.UUID) -> IngestionRequest | None:
    return session.get(IngestionRequest, request_id)


# Orthanc announces a study's deletion once per instance (and once for the study): the
# notices of one study gather in one request, launched once they have been quiet this long.
DELETION_SETTLE_SECONDS = 1.0


def claim_unlaunched(session: Session, limit: int) -> Sequence[IngestionRequest]:
    """Requests without a run, oldest first, locked so that two launchers never take the same one."""
    settled = func.now() - dt.timedelta(seconds=DELETION_SETTLE_SECONDS)
    return session.scalars(
        select(IngestionRequest)
        .where(
            IngestionRequest.run_id.is_(None),
            IngestionRequest.status == "accepted",
            (IngestionRequest.trigger != DELETION_TRIGGER) | (IngestionRequest.updated_at < settled),
        )
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
