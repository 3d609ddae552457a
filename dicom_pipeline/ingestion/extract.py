"""Extract: list the study in Orthanc, stream new files to staging, read their headers."""

from __future__ import annotations

import logging
import shutil
import uuid
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.repository import KnownInstance, known_instances
from dicom_pipeline.domain.identifiers import read_uid, validate_orthanc_id
from dicom_pipeline.domain.metadata import (
    ExtractedStudy,
    InstanceRecord,
    SeriesAttributes,
)
from dicom_pipeline.errors import OrthancError, OrthancNotFound, PipelineError, StudyChangedWhileReading
from dicom_pipeline.ingestion.download import ParsedDownload, download_and_parse
from dicom_pipeline.orthanc.client import OrthancClient, OrthancInstance
from dicom_pipeline.runtime import Runtime

log = logging.getLogger(__name__)

# A study this big starts the instance readers (once per process); smaller ones are read
# by threads of the run's process until then.
READERS_MIN_INSTANCES = 16


def extract_study(runtime: Runtime, orthanc_id: str, run_id: str | None = None) -> ExtractedStudy:
    """Staging goes under the run's scratch folder, which the run (or the reaper) removes."""
    validate_orthanc_id(orthanc_id)
    with runtime.orthanc() as orthanc:
        info = orthanc.study(orthanc_id)
        study_uid = read_uid((info.get("MainDicomTags") or {}).get("StudyInstanceUID"), "StudyInstanceUID")
        try:
            instances = orthanc.study_instances(orthanc_id)
        except OrthancNotFound as exc:
            raise StudyChangedWhileReading(
                f"study {orthanc_id} went away while being read", study_uid=study_uid
            ) from exc
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

        staging = runtime.run_staging(run_id) / f"{orthanc_id}-{uuid.uuid4().hex[:12]}"
        staging.mkdir(parents=True)
        try:
            parsed = _download_all(runtime, orthanc, to_download, staging, study_uid)
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
        orthanc_is_stable=bool(info.get("IsStable", True)),
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
    runtime: Runtime, orthanc: OrthancClient, instances: list[OrthancInstance], staging: Path, study_uid: str
) -> list[ParsedDownload]:
    """In the reader processes (ingestion.readers: pydicom holds the GIL, so threads share
    one core) once a study is big enough to be worth starting them, or they are up; else
    in threads of this process. Either way at most a fixed number of files in flight."""
    if not instances:
        return []
    readers = runtime.instance_readers
    if readers is not None and (readers.started or len(instances) >= READERS_MIN_INSTANCES):
        return _all_or_first_error(readers.read_study(instances, staging, study_uid))
    with ThreadPoolExecutor(max_workers=runtime.settings.download_concurrency, thread_name_prefix="download") as pool:
        return _all_or_first_error([pool.submit(download_and_parse, orthanc, i, staging, study_uid) for i in instances])


def _all_or_first_error(futures: list[Future[ParsedDownload]]) -> list[ParsedDownload]:
    """Every result in order, or the first failure with the rest cancelled, once none is
    running any more (the caller then removes the staging folder they write into)."""
    _, pending = wait(futures, return_when=FIRST_EXCEPTION)
    for future in pending:
        future.cancel()
    wait(futures)
    for future in futures:
        if not future.cancelled():
            error = future.exception()
            if error is not None:
                raise error
    return [future.result() for future in futures]
