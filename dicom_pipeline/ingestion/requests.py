"""Webhook ingestion requests: the one module that moves them from state to state.

    accepted --launch--> launched --run ends--> succeeded | failed
    accepted --------------------------------> succeeded   (that Orthanc state is already ingested)
    accepted --same state as a launched one--> launched as its duplicate (reads as that request)

A failure never overwrites a success; `failed` can still become `succeeded` (a run retry,
a later trigger). Requests are deduplicated on the study's Orthanc `LastUpdate`: every
announcement of one Orthanc state (Orthanc's own Lua call, a caller's retry, the change
feed) shares one run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.ingestion_requests import DELETION_TRIGGER, mark_finished
from dicom_pipeline.db.models import IngestionRequest, OrthancStudySeen, Study
from dicom_pipeline.db.repository import VersionOutcome
from dicom_pipeline.runtime import Runtime


@dataclass(frozen=True)
class LaunchDecision:
    action: Literal["launch", "duplicate", "already_ingested", "already_deleted"]
    original: IngestionRequest | None = None
    study_uid: str | None = None
    version: int | None = None


# The launch state of a study Orthanc no longer holds (in place of a LastUpdate).
DELETED = "deleted"


def decide_launch(session: Session, request: IngestionRequest, last_update: str | None) -> LaunchDecision:
    """Whether this request needs a run of its own. `last_update`: the study's LastUpdate,
    DELETED when Orthanc has no such study, None when Orthanc did not say (down): launch,
    and let the run report what is wrong.

    Orthanc does not move LastUpdate when an instance is deleted, so a deletion notice for
    a study Orthanc still holds always gets its run."""
    request.orthanc_last_update = last_update
    if last_update is None or (request.trigger == DELETION_TRIGGER and last_update != DELETED):
        return LaunchDecision("launch")
    original = session.scalars(
        select(IngestionRequest)
        .where(
            IngestionRequest.orthanc_id == request.orthanc_id,
            IngestionRequest.orthanc_last_update == last_update,
            IngestionRequest.status == "launched",
            IngestionRequest.duplicate_of.is_(None),
            IngestionRequest.id != request.id,
        )
        .order_by(IngestionRequest.created_at)
        .limit(1)
        # Held until this launcher commits: the original's run cannot record its end in
        # between, so the duplicate is finished together with it (mark_finished).
        .with_for_update()
    ).first()
    if original is not None:
        return LaunchDecision("duplicate", original=original)
    if last_update == DELETED:
        deleted = session.execute(
            select(Study.study_instance_uid, Study.current_version).where(
                Study.orthanc_id == request.orthanc_id, Study.deleted_at.is_not(None)
            )
        ).first()
        if deleted is not None:
            return LaunchDecision("already_deleted", study_uid=deleted[0], version=deleted[1])
        return LaunchDecision("launch")
    # Read while stable at exactly this LastUpdate: nothing can have arrived since.
    seen = session.execute(
        select(Study.study_instance_uid, Study.current_version)
        .join(OrthancStudySeen, OrthancStudySeen.study_instance_uid == Study.study_instance_uid)
        .where(
            OrthancStudySeen.orthanc_id == request.orthanc_id,
            OrthancStudySeen.last_update == last_update,
            OrthancStudySeen.stable_when_seen.is_(True),
        )
    ).first()
    if seen is not None:
        return LaunchDecision("already_ingested", study_uid=seen[0], version=seen[1])
    return LaunchDecision("launch")


def mark_launched(request: IngestionRequest, run_id: str) -> None:
    request.run_id = run_id
    request.status = "launched"
    request.error = None
    request.updated_at = func.now()


def mark_duplicate(request: IngestionRequest, original: IngestionRequest) -> None:
    """The duplicate's status follows the original's from here on (mark_finished)."""
    request.duplicate_of = original.id
    request.run_id = original.run_id
    request.status = "launched"
    request.error = None
    request.updated_at = func.now()


def mark_already_ingested(
    request: IngestionRequest, study_uid: str | None, version: int | None, outcome: str = "unchanged"
) -> None:
    request.status = "succeeded"
    request.outcome = outcome
    request.study_instance_uid = study_uid
    request.version = version
    request.error = None
    request.updated_at = func.now()


def mark_launch_failed(request: IngestionRequest, error: str) -> None:
    """Stays accepted: the launcher tries again (Dagster is usually just down)."""
    request.launch_attempts += 1
    request.error = f"launch failed: {error}"[:2000]


def as_seen_by_caller(session: Session, request: IngestionRequest) -> IngestionRequest:
    """The request whose run serves this one: itself, or the request it duplicates."""
    if request.duplicate_of is None:
        return request
    return session.get(IngestionRequest, request.duplicate_of) or request


def studies_covered_by_requests(session: Session, states: Mapping[str, str | None]) -> set[str]:
    """Orthanc ids (of `states`: id -> current LastUpdate) that a webhook request already
    covers: one waiting for its launch, or one for exactly this Orthanc state."""
    if not states:
        return set()
    rows = session.execute(
        select(IngestionRequest.orthanc_id, IngestionRequest.orthanc_last_update, IngestionRequest.status).where(
            IngestionRequest.orthanc_id.in_(list(states)),
            or_(
                IngestionRequest.status == "accepted",
                IngestionRequest.orthanc_last_update.in_([s for s in states.values() if s]),
            ),
        )
    ).all()
    covered = set()
    for orthanc_id, last_update, status in rows:
        same_state = last_update is not None and last_update == states.get(orthanc_id)
        if status == "accepted" or (same_state and status != "failed"):
            covered.add(orthanc_id)
    return covered


def request_succeeded(runtime: Runtime, request_id: str | None, outcome: VersionOutcome) -> None:
    if not request_id:
        return
    with transaction(runtime.engine) as session:
        mark_finished(
            session,
            request_id,
            succeeded=True,
            study_uid=outcome.study_instance_uid,
            version=outcome.version,
            outcome=outcome.status,
        )


def request_absent(runtime: Runtime, request_id: str | None) -> None:
    """A deletion notice for a study the database never held: served, nothing to do."""
    if not request_id:
        return
    with transaction(runtime.engine) as session:
        mark_finished(session, request_id, succeeded=True, outcome="absent")


def request_failed(runtime: Runtime, request_id: str | None, error: str) -> None:
    if not request_id:
        return
    with transaction(runtime.engine) as session:
        mark_finished(session, request_id, succeeded=False, error=error)
