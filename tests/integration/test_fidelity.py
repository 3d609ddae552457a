"""What Orthanc holds is carried, odd or not (real Orthanc, PostgreSQL, Kafka): files without
File Meta Information, values invalid for their VR, missing SOP Class UID, non-conforming
UIDs. The stored DICOM JSON (after PostgreSQL's JSONB) equals pydicom's `to_json_dict` of
the file Orthanc serves, except what the instance's `issues` name."""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicom_pipeline_dev.http import ServiceSession
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicom_pipeline.dicom.header import BULK_DATA_THRESHOLD, _omit_bulk_data, _without_nul
from dicom_pipeline.settings import Settings
from tests.helpers import KafkaTap, ingest, query, unique_seed

pytestmark = pytest.mark.integration


def _upload(orthanc: ServiceSession, data: bytes) -> dict[str, str]:
    response = orthanc.post("/instances", data=data)
    response.raise_for_status()
    return dict(response.json())


def _own_copy(path: Path) -> bytes:
    """The file with UIDs of its own (pydicom's files share Study Instance UIDs, and a study
    is one study to the pipeline), every other element written back as read: raw, invalid
    values included, and without File Meta Information if the file had none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            ds = pydicom.dcmread(path, force=True)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
        if "MediaStorageSOPInstanceUID" in getattr(ds, "file_meta", ()):
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def _reference(data: bytes, without: set[str]) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        for key in without:
            del ds[int(key, 16)]
        json = ds.to_json_dict(bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_element_handler=_omit_bulk_data)
    return dict(_without_nul(json))


def _stored(orthanc_instance_id: str) -> tuple[dict[str, Any], list[str], str | None, str]:
    rows = query(
        "SELECT header, issues, sop_class_uid, storage_key FROM instance WHERE orthanc_id = :id",
        id=orthanc_instance_id,
    )
    assert len(rows) == 1, f"instance {orthanc_instance_id} not stored once"
    header, issues, sop_class_uid, key = rows[0]
    return header, list(issues), sop_class_uid, key


@pytest.mark.parametrize(
    ("name", "expected_issue"),
    [
        ("ExplVR_LitEndNoMeta.dcm", "no File Meta Information or 'DICM' prefix (read with force=True)"),
        ("rtstruct.dcm", "no File Meta Information or 'DICM' prefix (read with force=True)"),
        ("badVR.dcm", "(0028,0008) value invalid for VR IS (ValueError; raw bytes kept)"),
        ("CT_small.dcm", None),
        ("MR_small.dcm", None),
    ],
)
def test_pydicom_test_file_served_by_orthanc_is_ingested_and_its_stored_json_equals_to_json_dict(
    orthanc: ServiceSession, name: str, expected_issue: str | None
) -> None:
    uploaded = _upload(orthanc, _own_copy(Path(get_testdata_file(name))))  # type: ignore[arg-type]
    summary = ingest(uploaded["ParentStudy"])
    assert summary["status"] in ("created", "updated", "unchanged"), summary

    header, issues, _, _ = _stored(uploaded["ID"])
    served = orthanc.get(f"/instances/{uploaded['ID']}/file").content
    flagged = {issue[1:10].replace(",", "").upper() for issue in issues if issue.startswith("(")}
    assert issues == ([expected_issue] if expected_issue else [])
    reference = _reference(served, flagged)
    assert {k: v for k, v in header.items() if k not in flagged} == reference
    for key in flagged:
        assert header[key]["InlineBinary"] and base64.b64decode(header[key]["InlineBinary"])


def test_non_conforming_uid_and_missing_sop_class_are_stored_verbatim_flagged_and_published(
    stack_settings: Settings, orthanc: ServiceSession, events: KafkaTap
) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
    # Letters (Orthanc keeps them; it would drop spaces from its own copy of the tags).
    odd_uid = f"1.2.840.113619.2.ABC.{unique_seed()}.x"
    ds.StudyInstanceUID = odd_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    del ds.SOPClassUID
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=False)
    uploaded = _upload(orthanc, buffer.getvalue())

    summary = ingest(uploaded["ParentStudy"])

    assert summary["status"] == "created", summary
    _, issues, sop_class_uid, key = _stored(uploaded["ID"])
    assert query("SELECT count(*) FROM study WHERE study_instance_uid = :uid", uid=odd_uid) == [(1,)]
    assert sop_class_uid is None
    assert sorted(issues) == [
        "SOPClassUID is missing",
        "StudyInstanceUID does not conform to PS3.5 9.1 (kept verbatim)",
    ]
    assert key.startswith("x") and "ABC" not in key
    stored_file = Path(stack_settings.storage_url.removeprefix("file://")) / key
    assert stored_file.read_bytes() == orthanc.get(f"/instances/{uploaded['ID']}/file").content
    event = events.read(expected=1, key=odd_uid)[0]
    assert event.value["study"]["study_instance_uid"] == odd_uid
    assert event.value["warnings"] == [
        "SOPClassUID is missing (1 instance(s))",
        "StudyInstanceUID does not conform to PS3.5 9.1 (kept verbatim) (1 instance(s))",
    ]
    assert event.value["storage"]["location"].endswith("/" + key.split("/")[0] + "/")
