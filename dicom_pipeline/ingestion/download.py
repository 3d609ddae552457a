"""Downloading and parsing one instance: streamed to staging, hashed, header read."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dicom_pipeline.dicom.header import parse_instance
from dicom_pipeline.domain.metadata import InstanceRecord, SeriesAttributes, StudyAttributes
from dicom_pipeline.errors import InvalidDicom, OrthancNotFound, StudyChangedWhileReading
from dicom_pipeline.orthanc.client import OrthancClient, OrthancInstance
from dicom_pipeline.storage.keys import storage_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParsedDownload:
    record: InstanceRecord
    study: StudyAttributes
    series: SeriesAttributes


def download_and_parse(
    orthanc: OrthancClient, instance: OrthancInstance, staging: Path, study_uid: str
) -> ParsedDownload:
    path = staging / f"{instance.orthanc_id}.dcm"
    try:
        downloaded = orthanc.download_instance(instance.orthanc_id, path)
    except OrthancNotFound as exc:
        # Deleted between the study's listing and this download: the next attempt reads the
        # study as it is now (and finds it deleted, or smaller).
        raise StudyChangedWhileReading(
            f"{exc}; study changed while being read", study_uid=study_uid, instance=instance.orthanc_id
        ) from exc
    parsed = parse_instance(path, instance=instance.orthanc_id)
    if parsed.issues:
        # No values in the issues: they are safe to log.
        log.warning("instance kept with issues", extra={"instance": instance.orthanc_id, "issues": parsed.issues})
    if parsed.study.study_instance_uid != study_uid:
        raise InvalidDicom(
            f"instance {instance.orthanc_id} has StudyInstanceUID {parsed.study.study_instance_uid}, "
            f"expected {study_uid}",
            study_uid=study_uid,
            instance=instance.orthanc_id,
        )
    series = parsed.series
    record = InstanceRecord(
        orthanc_id=instance.orthanc_id,
        orthanc_file_uuid=instance.file_uuid,
        sop_instance_uid=parsed.sop_instance_uid,
        series_instance_uid=series.series_instance_uid,
        sha256=downloaded.sha256,
        size_bytes=downloaded.size_bytes,
        storage_key=storage_key(study_uid, series.series_instance_uid, parsed.sop_instance_uid),
        staged_path=str(path),
        header=parsed.dicom_json,
        issues=parsed.issues,
        **parsed.attributes,
    )
    return ParsedDownload(record=record, study=parsed.study, series=series)
