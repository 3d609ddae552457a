"""Persist: the version's rows and its outbox event in one transaction."""

from __future__ import annotations

import shutil

from dicom_pipeline.db.dead_letters import resolve_dead_letters
from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.repository import VersionOutcome, record_orthanc_seen, record_study_version
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
