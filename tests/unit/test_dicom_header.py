"""Header parsing on pydicom's own test files and on broken input."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_charset_files, get_testdata_file

from dicom_pipeline.dicom.header import BULK_OMITTED_URI, read_header
from dicom_pipeline.errors import InvalidDicom


def _testdata(name: str) -> Path:
    if name.startswith("chr"):
        return Path(get_charset_files(name)[0])
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


def test_ct_header_attributes_match_pydicom_and_pixel_data_is_left_out() -> None:
    path = _testdata("CT_small.dcm")
    header = read_header(path, instance="i")
    reference = dcmread(path)
    study = header.study()
    assert study.study_instance_uid == reference.StudyInstanceUID
    assert study.patient_name == str(reference.PatientName)
    assert header.instance_attributes()["rows"] == reference.Rows
    document = header.dicom_json()
    assert "7FE00010" not in document
    assert document["00100010"]["vr"] == "PN"


def test_bulk_data_elements_are_replaced_by_an_omitted_uri(tmp_path: Path) -> None:
    ds = dcmread(_testdata("CT_small.dcm"))
    ds.add_new(0x00091010, "OB", b"\x00" * 5000)  # a large private binary element
    path = tmp_path / "bulk.dcm"
    ds.save_as(path)
    document = read_header(path, instance="i").dicom_json()
    assert document["00091010"] == {"vr": "OB", "BulkDataURI": BULK_OMITTED_URI}


@pytest.mark.parametrize(
    ("name", "expected_name"),
    [
        ("chrH31.dcm", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        ("chrFren.dcm", "Buc^Jérôme"),
        ("chrRuss.dcm", "Люкceмбypг"),
        ("chrX2.dcm", "Wang^XiaoDong=王^小东"),
        ("chrI2.dcm", "Hong^Gildong=洪^吉洞=홍^길동"),
    ],
)
def test_specific_character_sets_decode_to_utf8_with_name_components(name: str, expected_name: str) -> None:
    assert read_header(_testdata(name), instance="i").study().patient_name == expected_name


def test_a_file_that_is_not_dicom_is_invalid_naming_the_instance(tmp_path: Path) -> None:
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"not dicom at all" * 100)
    with pytest.raises(InvalidDicom, match="instance abc"):
        read_header(path, instance="abc")


def test_missing_sop_instance_uid_is_invalid(tmp_path: Path) -> None:
    ds = dcmread(_testdata("CT_small.dcm"))
    del ds.SOPInstanceUID
    path = tmp_path / "nouid.dcm"
    ds.save_as(path)
    with pytest.raises(InvalidDicom, match="SOPInstanceUID is missing"):
        read_header(path, instance="x")
