"""Parse one staged DICOM file's header into the domain's records, never reading pixel data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicom_pipeline.dicom.values import clean_text, parse_da, parse_tm, to_int
from dicom_pipeline.domain.identifiers import validate_uid
from dicom_pipeline.domain.metadata import SeriesAttributes, StudyAttributes
from dicom_pipeline.errors import InvalidDicom, InvalidIdentifier

# Elements larger than this with a binary VR are bulk data: left out of the JSON header,
# replaced by a BulkDataURI that says so (PS3.18 F.2.2 allows either).
BULK_DATA_THRESHOLD = 1024
BULK_OMITTED_URI = "urn:dicom-pipeline:bulkdata-omitted"


class ParsedHeader:
    """The attributes the database types, plus the whole header as DICOM JSON."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def uid(self, keyword: str) -> str:
        return validate_uid(self.ds.get(keyword), keyword)

    def study(self) -> StudyAttributes:
        ds = self.ds
        return StudyAttributes(
            study_instance_uid=self.uid("StudyInstanceUID"),
            patient_id=clean_text(ds.get("PatientID")),
            patient_name=clean_text(ds.get("PatientName")),
            patient_birth_date=parse_da(ds.get("PatientBirthDate")),
            patient_sex=clean_text(ds.get("PatientSex")),
            accession_number=clean_text(ds.get("AccessionNumber")),
            study_date=parse_da(ds.get("StudyDate")),
            study_time=parse_tm(ds.get("StudyTime")),
            study_description=clean_text(ds.get("StudyDescription")),
            referring_physician_name=clean_text(ds.get("ReferringPhysicianName")),
            specific_character_set=_charset(ds),
        )

    def series(self) -> SeriesAttributes:
        ds = self.ds
        return SeriesAttributes(
            series_instance_uid=self.uid("SeriesInstanceUID"),
            modality=clean_text(ds.get("Modality")),
            series_number=to_int(ds.get("SeriesNumber")),
            series_description=clean_text(ds.get("SeriesDescription")),
            body_part_examined=clean_text(ds.get("BodyPartExamined")),
        )

    def instance_attributes(self) -> dict[str, Any]:
        ds = self.ds
        meta = getattr(ds, "file_meta", None)
        transfer_syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        return {
            "sop_class_uid": self.uid("SOPClassUID"),
            "instance_number": to_int(ds.get("InstanceNumber")),
            "transfer_syntax_uid": str(transfer_syntax) if transfer_syntax else None,
            "rows": to_int(ds.get("Rows")),
            "columns": to_int(ds.get("Columns")),
            "number_of_frames": to_int(ds.get("NumberOfFrames")) or (1 if "Rows" in ds else None),
        }

    def dicom_json(self) -> dict[str, Any]:
        """The header as DICOM JSON (PS3.18 Annex F), bulk data left out."""
        try:
            data = self.ds.to_json_dict(
                bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_element_handler=_omit_bulk_data
            )
        except Exception as exc:
            raise InvalidDicom(f"header cannot be expressed as DICOM JSON: {type(exc).__name__}: {exc}") from exc
        return _without_nul(data)


def _omit_bulk_data(element: DataElement) -> str:
    return BULK_OMITTED_URI


def _charset(ds: Dataset) -> str | None:
    value = ds.get("SpecificCharacterSet")
    if value is None:
        return None
    if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _without_nul(value: Any) -> Any:
    """JSONB cannot hold U+0000; DICOM padding sometimes leaves one behind."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {key: _without_nul(item) for key, item in value.items()}
    return value


def read_header(path: Path, *, instance: str) -> ParsedHeader:
    """Read the header, stopping before pixel data; any parse failure is InvalidDicom."""
    try:
        # Text is decoded lazily, element by element, as the attributes and the DICOM JSON
        # are read (decoding everything up front cost ~5 ms per instance).
        ds = dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise InvalidDicom(f"instance {instance} is not a DICOM file: {exc}", instance=instance) from exc
    except Exception as exc:
        raise InvalidDicom(
            f"instance {instance} cannot be parsed: {type(exc).__name__}: {exc}", instance=instance
        ) from exc
    header = ParsedHeader(ds)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        try:
            header.uid(keyword)
        except InvalidIdentifier as exc:
            raise InvalidDicom(f"instance {instance}: {exc}", instance=instance) from exc
    return header


@dataclass(frozen=True)
class ParsedInstance:
    """Everything extraction needs from one file's header."""

    study: StudyAttributes
    series: SeriesAttributes
    sop_instance_uid: str
    attributes: dict[str, Any]
    dicom_json: dict[str, Any]


def parse_instance(path: Path, *, instance: str) -> ParsedInstance:
    """Read and interpret a header; whatever goes wrong is InvalidDicom naming the instance."""
    header = read_header(path, instance=instance)
    try:
        return ParsedInstance(
            study=header.study(),
            series=header.series(),
            sop_instance_uid=header.uid("SOPInstanceUID"),
            attributes=header.instance_attributes(),
            dicom_json=header.dicom_json(),
        )
    except InvalidDicom as exc:
        exc.instance = exc.instance or instance
        raise
    except Exception as exc:
        raise InvalidDicom(
            f"instance {instance} has an unreadable value: {type(exc).__name__}: {exc}", instance=instance
        ) from exc
