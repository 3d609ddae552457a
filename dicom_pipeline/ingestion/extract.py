"""Extract: list the study in Orthanc, stream new files to staging, read their headers."""

from __future__ import annotations

import logging
import shutil
import uuid
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.repository import KnownInstance, known_instances
from dicom_pipeline.dicom.header import read_header
from dicom_pipeline.domain.identifiers import validate_orthanc_id, validate_uid
from dicom_pipeline.domain.metadata import (
    ExtractedStudy,
    InstanceRecord,
    SeriesAttributes,
    StudyAttributes,
    storage_key,
)
from dicom_pipeline.errors import InvalidDicom, OrthancError, PipelineError
from dicom_pipeline.orthanc.client import OrthancClient, OrthancInstance
from dicom_pipeline.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Parsed:
    record: InstanceRecord
    study: StudyAttributes
    series: SeriesAttributes


def extract_study(runtime: Runtime, orthanc_id: str) -> ExtractedStudy:
    validate_orthanc_id(orthanc_id)
    with runtime.orthanc() as orthanc:
        info = orthanc.study(orthanc_id)
        study_uid = validate_uid((info.get("MainDicomTags") or {}).get("StudyInstanceUID"), "StudyInstanceUID")
        instances = orthanc.study_instances(orthanc_id)
        if not instances:
            raise OrthancError(f"study {orthanc_id} has no instances in Orthanc", study_uid=study_uid)
        with transaction(runtime.engine) as session:
            known = known_instances(session, study_uid)

        reused: list[InstanceRecord] = []
        to_download: list[OrthancInstance] = []
        for instance in instances:
            previous = known.get(instance.sop_instance_uid or "")
            if previous is not None and instance.file_uuid and previous.orthanc_file_uuid == instance.file_uuid:
                reused.append(_reuse(instance, previous))
            else:
                to_download.append(instance)

        staging = runtime.staging_root / f"{orthanc_id}-{uuid.uuid4().hex[:12]}"
        staging.mkdir(parents=True)
        try:
            parsed = _download_all(orthanc, to_download, staging, study_uid, runtime.settings.download_concurrency)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, PipelineError) and exc.study_uid is None:
                exc.study_uid = study_uid  # so the dead letter names the study
            raise

    parsed.sort(key=lambda p: (p.record.series_instance_uid, p.record.instance_number or 0, p.record.sop_instance_uid))
    series: dict[str, SeriesAttributes] = {}
    for item in parsed:
        series.setdefault(item.series.series_instance_uid, item.series)
    log.info(
        "extracted study",
        extra={"study_uid": study_uid, "orthanc_id": orthanc_id, "downloaded": len(parsed), "reused": len(reused)},
    )
    return ExtractedStudy(
        orthanc_id=orthanc_id,
        orthanc_last_update=info.get("LastUpdate"),
        study=parsed[0].study if parsed else None,
        series=series,
        instances=reused + [p.record for p in parsed],
        staging_dir=str(staging),
        study_instance_uid=study_uid,
    )


def _reuse(instance: OrthancInstance, previous: KnownInstance) -> InstanceRecord:
    return InstanceRecord(
        orthanc_id=instance.orthanc_id,
        orthanc_file_uuid=instance.file_uuid,
        sop_instance_uid=previous.sop_instance_uid,
        series_instance_uid=previous.series_instance_uid,
        sha256=previous.sha256,
        size_bytes=previous.size_bytes,
        storage_key=previous.storage_key,
        staged_path=None,
    )


def _download_all(
    orthanc: OrthancClient, instances: list[OrthancInstance], staging: Path, study_uid: str, concurrency: int
) -> list[_Parsed]:
    if not instances:
        return []
    # Bounded: at most `concurrency` files in flight, each streamed in 1 MiB chunks.
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="download") as pool:
        futures: list[Future[_Parsed]] = [
            pool.submit(_download_one, orthanc, instance, staging, study_uid) for instance in instances
        ]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        return [future.result() for future in futures]


def _download_one(orthanc: OrthancClient, instance: OrthancInstance, staging: Path, study_uid: str) -> _Parsed:
    path = staging / f"{instance.orthanc_id}.dcm"
    downloaded = orthanc.download_instance(instance.orthanc_id, path)
    header = read_header(path, instance=instance.orthanc_id)
    study = header.study()
    if study.study_instance_uid != study_uid:
        raise InvalidDicom(
            f"instance {instance.orthanc_id} has StudyInstanceUID {study.study_instance_uid}, expected {study_uid}",
            study_uid=study_uid,
            instance=instance.orthanc_id,
        )
    series = header.series()
    sop_uid = header.uid("SOPInstanceUID")
    record = InstanceRecord(
        orthanc_id=instance.orthanc_id,
        orthanc_file_uuid=instance.file_uuid,
        sop_instance_uid=sop_uid,
        series_instance_uid=series.series_instance_uid,
        sha256=downloaded.sha256,
        size_bytes=downloaded.size_bytes,
        storage_key=storage_key(study_uid, series.series_instance_uid, sop_uid),
        staged_path=str(path),
        header=header.dicom_json(),
        **header.instance_attributes(),
    )
    return _Parsed(record=record, study=study, series=series)
