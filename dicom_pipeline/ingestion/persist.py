"""Persist: the version's rows and its outbox event in one transaction (a deletion too)."""

from __future__ import annotations

import logging
import shutil

from sqlalchemy import select

from dicom_pipeline.db.dead_letters import resolve_dead_letters
from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.models import Study
from dicom_pipeline.db.repository import (
    VersionOutcome,
    lock_study,
    record_orthanc_seen,
    record_study_deletion,
    record_study_version,
)
from dicom_pipeline.domain.events import StudyEventContext
from dicom_pipeline.domain.metadata import ExtractedStudy
from dicom_pipeline.runtime import Runtime


def persist_study_version(runtime: Runtime, extracted: ExtractedStudy, context: StudyEventContext) -> VersionOutcome:
    with transaction(runtime.engine) as session:
        outcome = record_study_version(session, extracted, context)
        resolve_dead_letters(session, extracted.study_instance_uid, extracted.orthanc_id)
        record_orthanc_seen(
            session,
            extracted.orthanc_id,
            extracted.study_instance_uid,
            extracted.orthanc_last_update,
            stable=extracted.orthanc_is_stable,
        )
    discard_staging(extracted)
    return outcome


def discard_staging(extracted: ExtractedStudy) -> None:
    shutil.rmtree(extracted.staging_dir, ignore_errors=True)


log = logging.getLogger(__name__)


def record_deletion(runtime: Runtime, orthanc_id: str, context: StudyEventContext) -> VersionOutcome | None:
    """The deletion version and its event; then the raw files, if the setting says so.

    Files go after the commit, under the study's lock, and only while the study is still
    deleted (a study sent again meanwhile keeps them). Removing them is idempotent, so a
    later deletion notice finishes what a crash interrupted.
    """
    delete_files = runtime.settings.raw_files_on_delete == "delete"
    with transaction(runtime.engine) as session:
        outcome = record_study_deletion(session, orthanc_id, context, raw_files="deleted" if delete_files else "kept")
        if outcome is not None:
            # A recorded deletion ends the study as well as an ingestion does: letters of
            # earlier failed attempts (a run killed as it started) are settled by it.
            resolve_dead_letters(session, outcome.study_instance_uid, orthanc_id)
    if outcome is None or not delete_files:
        return outcome
    with transaction(runtime.engine) as session:
        lock_study(session, outcome.study_instance_uid)
        still_deleted = session.scalar(
            select(Study.deleted_at.is_not(None)).where(Study.study_instance_uid == outcome.study_instance_uid)
        )
        if still_deleted:
            removed = runtime.raw_store.delete_study(outcome.study_instance_uid)
            log.info("raw files deleted", extra={"study_uid": outcome.study_instance_uid, "objects": removed})
    return outcome
