"""Downloading and parsing one instance: the CPU-heavy part of extraction.

pydicom parsing is pure Python, so threads share one core. For large studies extraction
runs this in forked worker processes, so parsing uses every core while Orthanc streams
the next files.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from dicom_pipeline.dicom.header import parse_instance
from dicom_pipeline.domain.metadata import InstanceRecord, SeriesAttributes, StudyAttributes, storage_key
from dicom_pipeline.errors import InvalidDicom
from dicom_pipeline.orthanc.client import OrthancClient, OrthancInstance


@dataclass(frozen=True)
class ParsedDownload:
    record: InstanceRecord
    study: StudyAttributes
    series: SeriesAttributes


def download_and_parse(
    orthanc: OrthancClient, instance: OrthancInstance, staging: Path, study_uid: str
) -> ParsedDownload:
    path = staging / f"{instance.orthanc_id}.dcm"
    downloaded = orthanc.download_instance(instance.orthanc_id, path)
    parsed = parse_instance(path, instance=instance.orthanc_id)
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
        **parsed.attributes,
    )
    return ParsedDownload(record=record, study=parsed.study, series=series)


# One client per worker process, made by the pool's initializer.
_worker_client: OrthancClient | None = None


def init_worker(parent_pid: int, base_url: str, username: str, password: str, timeout: float) -> None:
    global _worker_client
    _die_with(parent_pid)
    _worker_client = OrthancClient(base_url, username, password, timeout)


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with(parent_pid: int) -> None:
    """A worker must not outlive the run that forked it.

    A run worker killed with SIGKILL cannot shut its pool down; its workers would wait on
    the task queue forever. Linux delivers SIGKILL to them when the forking thread dies.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


def download_in_worker(instance: OrthancInstance, staging: Path, study_uid: str) -> ParsedDownload:
    assert _worker_client is not None, "init_worker did not run"
    return download_and_parse(_worker_client, instance, staging, study_uid)
