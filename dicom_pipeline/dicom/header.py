"""Parse one staged DICOM file's header into the domain's records, never reading pixel data."""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicom_pipeline.dicom.json_model import element_json, pydicom_defaults
from dicom_pipeline.dicom.values import clean_text, parse_da, parse_tm, to_int
from dicom_pipeline.domain.identifiers import read_uid, uid_conforms
from dicom_pipeline.domain.metadata import SeriesAttributes, StudyAttributes
from dicom_pipeline.errors import InvalidDicom, InvalidIdentifier

# Elements larger than this with a binary VR are bulk data: left out of the JSON header,
# replaced by a BulkDataURI that says so (PS3.18 F.2.2 allows either).
BULK_DATA_THRESHOLD = 1024
BULK_OMITTED_URI = "urn:dicom-pipeline:bulkdata-omitted"


class ParsedHeader:
    """The attributes the database types, plus the whole header as DICOM JSON.

    What does not conform is kept as found and named in `issues` (never with its value:
    issues reach events and logs, values may be PHI).
    """

    def __init__(self, ds: Dataset, issues: list[str] | None = None) -> None:
        self.ds = ds
        self.issues: list[str] = issues if issues is not None else []
        # The elements as read, before any is converted (conversion replaces the file's
        # bytes): an invalid value is stored as it was in the file. No copy: same objects.
        self._as_read: dict[int, DataElement | RawDataElement] = {tag: ds.get_item(tag) for tag in ds.keys()}  # noqa: SIM118
        self._plain = pydicom_defaults()
        self._from_bytes: dict[int, dict[str, Any] | None] = {}

    def _json_from_bytes(self, tag: int) -> dict[str, Any] | None:
        """The element's DICOM JSON read from its bytes (json_model), computed once for both
        the typed attributes and the header; None where pydicom must read it."""
        if tag not in self._from_bytes:
            raw = self._as_read[tag]
            self._from_bytes[tag] = (
                element_json(raw, bulk_threshold=BULK_DATA_THRESHOLD, bulk_uri=BULK_OMITTED_URI)
                if self._plain and isinstance(raw, RawDataElement)
                else None
            )
        return self._from_bytes[tag]

    def get(self, keyword: str) -> Any:
        """The value `Dataset.get(keyword)` gives (its empty value when empty): read
        from the bytes in the plain cases (json_model), which costs a fifth of pydicom's
        conversion, else pydicom's."""
        tag = tag_for_keyword(keyword)
        if tag is None or tag not in self._as_read:
            return None
        fast = self._json_from_bytes(tag)
        if fast is not None and "InlineBinary" not in fast and "BulkDataURI" not in fast:
            values = fast.get("Value")
            if not values:
                return empty_value_for_VR(fast["vr"])
            if fast["vr"] == "PN":
                values = [name["Alphabetic"] for name in values]
            return values[0] if len(values) == 1 else values
        return self.ds.get(keyword)

    def note(self, issue: str) -> None:
        """Name an issue once, however often the attribute is read."""
        if issue not in self.issues:
            self.issues.append(issue)

    def uid(self, keyword: str) -> str:
        uid = read_uid(self.get(keyword), keyword)
        if not uid_conforms(uid):
            self.note(f"{keyword} does not conform to PS3.5 9.1 (kept verbatim)")
        return uid

    def optional_uid(self, keyword: str) -> str | None:
        if not str(self.get(keyword) or "").strip("\x00 "):
            self.note(f"{keyword} is missing")
            return None
        return self.uid(keyword)

    def study(self) -> StudyAttributes:
        return StudyAttributes(
            study_instance_uid=self.uid("StudyInstanceUID"),
            patient_id=clean_text(self.get("PatientID")),
            patient_name=clean_text(self.get("PatientName")),
            patient_birth_date=parse_da(self.get("PatientBirthDate")),
            patient_sex=clean_text(self.get("PatientSex")),
            accession_number=clean_text(self.get("AccessionNumber")),
            study_date=parse_da(self.get("StudyDate")),
            study_time=parse_tm(self.get("StudyTime")),
            study_description=clean_text(self.get("StudyDescription")),
            referring_physician_name=clean_text(self.get("ReferringPhysicianName")),
            specific_character_set=_charset(self.get("SpecificCharacterSet")),
        )

    def series(self) -> SeriesAttributes:
        return SeriesAttributes(
            series_instance_uid=self.uid("SeriesInstanceUID"),
            modality=clean_text(self.get("Modality")),
            series_number=to_int(self.get("SeriesNumber")),
            series_description=clean_text(self.get("SeriesDescription")),
            body_part_examined=clean_text(self.get("BodyPartExamined")),
        )

    def instance_attributes(self) -> dict[str, Any]:
        ds = self.ds
        meta = getattr(ds, "file_meta", None)
        transfer_syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        return {
            "sop_class_uid": self.optional_uid("SOPClassUID"),
            "instance_number": to_int(self.get("InstanceNumber")),
            "transfer_syntax_uid": str(transfer_syntax) if transfer_syntax else None,
            "rows": to_int(self.get("Rows")),
            "columns": to_int(self.get("Columns")),
            "number_of_frames": to_int(self.get("NumberOfFrames")) or (1 if "Rows" in ds else None),
        }

    def dicom_json(self) -> dict[str, Any]:
        """The header as DICOM JSON (PS3.18 Annex F), bulk data left out: element by element
        what `Dataset.to_json_dict` gives, except that an element whose value is invalid for
        its VR keeps its raw bytes (`InlineBinary`) and is named in `issues`, instead of
        failing the instance."""
        data: dict[str, Any] = {}
        for tag in self.ds.keys():  # noqa: SIM118 - iterating a Dataset yields elements
            key = f"{tag:08X}"
            # The plain cases straight from the bytes (~10x faster); None: pydicom's way.
            fast = self._json_from_bytes(tag)
            if fast is not None:
                data[key] = fast
                continue
            try:
                data[key] = _without_nul(
                    self.ds[tag].to_json_dict(
                        bulk_data_element_handler=_omit_bulk_data, bulk_data_threshold=BULK_DATA_THRESHOLD
                    )
                )
            except Exception as exc:  # noqa: BLE001 - any conversion failure keeps the raw value
                data[key] = _without_nul(_raw_element_json(self._as_read[tag]))
                self.note(
                    f"({tag.group:04X},{tag.element:04X}) value invalid for VR {data[key]['vr']} "
                    f"({type(exc).__name__}; raw bytes kept)"
                )
        return data


def _omit_bulk_data(element: DataElement) -> str:
    return BULK_OMITTED_URI


def _raw_element_json(element: DataElement | RawDataElement) -> dict[str, Any]:
    vr = str(element.VR or "UN")
    value = element.value
    if isinstance(value, bytes | bytearray):
        return {"vr": vr, "InlineBinary": base64.b64encode(bytes(value)).decode("ascii")}
    return {"vr": vr, "Value": [str(value)]}


def _charset(value: Any) -> str | None:
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
    """Read the header, stopping before pixel data; what cannot be read is InvalidDicom.

    A file without File Meta Information or the 'DICM' prefix (Orthanc stores what it was
    sent) is read again with force=True and flagged; it is refused only if even then it
    lacks the identifiers an instance needs.
    """
    issues: list[str] = []
    try:
        # Text is decoded lazily, element by element, as the attributes and the DICOM JSON
        # are read (decoding everything up front cost ~5 ms per instance).
        ds = dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:
        try:
            ds = dcmread(path, stop_before_pixels=True, force=True)
        except Exception as forced_exc:
            raise InvalidDicom(
                f"instance {instance} is not a DICOM file ({exc}); read with force=True: "
                f"{type(forced_exc).__name__}: {forced_exc}",
                instance=instance,
            ) from forced_exc
        issues.append("no File Meta Information or 'DICM' prefix (read with force=True)")
    except Exception as exc:
        raise InvalidDicom(
            f"instance {instance} cannot be parsed: {type(exc).__name__}: {exc}", instance=instance
        ) from exc
    header = ParsedHeader(ds, issues)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        try:
            header.uid(keyword)
        except InvalidIdentifier as exc:
            forced = " (no File Meta Information; read with force=True)" if issues else ""
            raise InvalidDicom(f"instance {instance}: {exc}{forced}", instance=instance) from exc
    return header


@dataclass(frozen=True)
class ParsedInstance:
    """Everything extraction needs from one file's header."""

    study: StudyAttributes
    series: SeriesAttributes
    sop_instance_uid: str
    attributes: dict[str, Any]
    dicom_json: dict[str, Any]
    issues: tuple[str, ...] = ()


def parse_instance(path: Path, *, instance: str) -> ParsedInstance:
    """Read and interpret a header; whatever goes wrong is InvalidDicom naming the instance."""
    header = read_header(path, instance=instance)
    try:
        parsed = ParsedInstance(
            study=header.study(),
            series=header.series(),
            sop_instance_uid=header.uid("SOPInstanceUID"),
            attributes=header.instance_attributes(),
            dicom_json=header.dicom_json(),
        )
        return replace(parsed, issues=tuple(header.issues))
    except InvalidDicom as exc:
        exc.instance = exc.instance or instance
        raise
    except Exception as exc:
        raise InvalidDicom(
            f"instance {instance} has an unreadable value: {type(exc).__name__}: {exc}", instance=instance
        ) from exc
