"""What extraction learns about a study, its series and instances."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DicomDate:
    """A DA/TM value: typed when valid, the raw text kept either way."""

    raw: str | None
    date: dt.date | None = None
    time: dt.time | None = None


@dataclass(frozen=True)
class StudyAttributes:
    study_instance_uid: str
    patient_id: str | None
    patient_name: str | None
    patient_birth_date: DicomDate
    patient_sex: str | None
    accession_number: str | None
    study_date: DicomDate
    study_time: DicomDate
    study_description: str | None
    referring_physician_name: str | None
    specific_character_set: str | None


@dataclass(frozen=True)
class SeriesAttributes:
    series_instance_uid: str
    modality: str | None
    series_number: int | None
    series_description: str | None
    body_part_examined: str | None


@dataclass(frozen=True)
class InstanceRecord:
    """One instance as found in Orthanc and, when downloaded, as read from its header."""

    orthanc_id: str
    orthanc_file_uuid: str | None
    sop_instance_uid: str
    series_instance_uid: str
    sha256: str
    size_bytes: int
    storage_key: str
    staged_path: str | None  # None: already stored and unchanged, not downloaded again
    sop_class_uid: str | None = None
    instance_number: int | None = None
    transfer_syntax_uid: str | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int | None = None
    header: dict[str, Any] | None = None
    # What does not conform (a UID, a value invalid for its VR, a file without File Meta
    # Information...): kept as found and named here. No values, so no PHI.
    issues: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExtractedStudy:
    """The output of extract_study: enough to persist, store and describe a version."""

    orthanc_id: str
    orthanc_last_update: str | None
    study: StudyAttributes | None  # None when nothing was downloaded (nothing new)
    series: dict[str, SeriesAttributes]
    instances: list[InstanceRecord]
    staging_dir: str
    study_instance_uid: str
    orthanc_is_stable: bool = True

    @property
    def content(self) -> dict[str, str]:
        return {record.sop_instance_uid: record.sha256 for record in self.instances}

    @property
    def new_records(self) -> list[InstanceRecord]:
        return [record for record in self.instances if record.staged_path is not None]
