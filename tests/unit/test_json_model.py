"""The bytes-to-DICOM-JSON fast path equals pydicom's `to_json_dict` or declines.

Every value representation the fast path handles gets the awkward values real files carry
(padding, NULs, empty items, backslashes, signs, exponents, non-ASCII and ISO 2022 text,
lengths that are not a multiple of the value size), in explicit and implicit VR, under
several character sets. For each: the fast path's answer is pydicom's, element for element,
or None; and where pydicom refuses the value, the fast path must have declined (so the
caller keeps the raw bytes and names the issue, as before).
"""

from __future__ import annotations

import struct
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.charset import convert_encodings
from pydicom.data import get_testdata_files
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.tag import Tag

from dicom_pipeline.dicom.header import (
    BULK_DATA_THRESHOLD,
    BULK_OMITTED_URI,
    ParsedHeader,
    _omit_bulk_data,
    _without_nul,
)
from dicom_pipeline.dicom.json_model import element_json
from dicom_pipeline.dicom.values import clean_text, parse_da, parse_tm, to_int

TEST_FILES = sorted(Path(f) for f in get_testdata_files("*") if Path(f).is_file())

# fmt: off
TEXT = [
    b"", b" ", b"\x00", b"ABC", b"ABC ", b"ABC\x00", b" ABC", b"A\\B", b"A\\", b"\\", b"\\B", b" A \\ B ",
    b"A\x00B", b"A\\\\B", b"Doe^John", b"Doe^John^^^", b"Doe^John=Yamada", b"=", b"a=b\\c", b"ABCD" * 40,
    b"\xe9t\xe9", b"\x1b$B;3ED\x1b(B", b"A\tB", b"A\r\nB", b"line one\\line two ",
]
NUMBER_TEXT = [
    b"", b" ", b"0", b"1", b"-0", b"+5", b" 12 ", b"007", b"1.5", b" 1.5 ", b"1.50\\2", b"1e3", b"-1.5E-3",
    b".5", b"5.", b"1.0", b"1A", b"nan", b"inf", b"1_0", b"1\\", b"\\1", b"1\\\\2", b"1 \\ 2 ", b"3\x00",
    b"\t4\t", b"99999999999", b"1.2.3", b"\xb5", b"1\x00\\2",
]
UIDS = [b"", b"1.2.3", b"1.2.3\x00", b"1.2.3 ", b"1.2.3\\4.5", b"1.2.ABC/../x y", b"1.2\x00.3", b"\x00"]
# fmt: on


def _binary_values(size: int) -> list[bytes]:
    return [b"", bytes(size), bytes(range(size * 3)), bytes(size + 1), b"\xff" * size, bytes(1), b"\x01" * 2000]


VALUES: dict[str, list[bytes]] = {
    **dict.fromkeys(("AE", "AS", "CS", "DA", "DT", "TM", "LO", "SH", "UC", "LT", "ST", "UT", "PN"), TEXT),
    "UI": UIDS,
    "IS": NUMBER_TEXT,
    "DS": NUMBER_TEXT,
    **{
        vr: _binary_values(struct.calcsize("=" + code))
        for vr, code in {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}.items()
    },
    **{vr: _binary_values(2) for vr in ("OB", "OW", "OD", "OF", "OL", "OV")},
}
VALUES["FL"] = [*VALUES["FL"], struct.pack("<f", 1.1), struct.pack("<2f", -0.0, 3.5)]
VALUES["FD"] = [*VALUES["FD"], struct.pack("<d", 1.1), struct.pack("<d", float("nan"))]
CHARSETS: list[Any] = [None, "ISO_IR 100", "ISO_IR 192", ["", "ISO 2022 IR 87"], "GB18030"]


def _public_tag(vr: str) -> int:
    """A public tag of this VR, for implicit VR (where the dictionary gives the VR)."""
    for tag, entry in DicomDictionary.items():
        if entry[0] == vr and entry[1] == "1-n" and tag not in (0x00281101, 0x00281102, 0x00281103, 0x00283002):
            return tag
    for tag, entry in DicomDictionary.items():
        if entry[0] == vr:
            return tag
    raise LookupError(vr)


def _reference(raw: RawDataElement, encoding: Any) -> dict[str, Any] | None:
    """What pydicom gives, or None when it refuses the value."""
    try:
        element = convert_raw_data_element(raw, encoding=convert_encodings(encoding))
        return dict(
            _without_nul(
                element.to_json_dict(bulk_data_element_handler=_omit_bulk_data, bulk_data_threshold=BULK_DATA_THRESHOLD)
            )
        )
    except Exception:  # noqa: BLE001 - any refusal: the fast path must have declined
        return None


def _equal(fast: dict[str, Any], reference: dict[str, Any]) -> bool:
    """Equal, with NaN equal to itself (FD can carry one)."""
    if set(fast) != set(reference):
        return False
    for key in fast:
        a, b = fast[key], reference[key]
        if key == "Value":
            if len(a) != len(b):
                return False
            for x, y in zip(a, b, strict=True):
                if x != y and not (isinstance(x, float) and x != x and isinstance(y, float) and y != y):
                    return False
        elif a != b:
            return False
    return True


@pytest.mark.parametrize("vr", sorted(VALUES))
def test_fast_path_equals_pydicom_or_declines(vr: str) -> None:
    used = Counter[str]()
    for explicit in (True, False):
        tag = Tag(_public_tag(vr))
        for value in VALUES[vr]:
            raw = RawDataElement(tag, vr if explicit else None, len(value), value, 0, not explicit, True)
            for encoding in CHARSETS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    reference = _reference(raw, encoding)
                fast = element_json(raw, bulk_threshold=BULK_DATA_THRESHOLD, bulk_uri=BULK_OMITTED_URI)
                if fast is None:
                    used["declined"] += 1
                    continue
                used["fast"] += 1
                assert reference is not None, f"{vr} {value!r}: pydicom refuses it, the fast path must decline"
                assert _equal(fast, reference), f"{vr} {value!r} ({encoding}): {fast} != {reference}"
    # The test is about the fast path: a good share of these values must take it.
    assert used["fast"] >= (used["fast"] + used["declined"]) / 4, used


def test_big_endian_private_and_sequence_elements_are_left_to_pydicom() -> None:
    big = RawDataElement(Tag(0x00280010), "US", 2, b"\x00\x02", 0, False, False)
    private_implicit = RawDataElement(Tag(0x00091001), None, 4, b"ABCD", 0, True, True)
    sequence = RawDataElement(Tag(0x00081140), "SQ", 0, b"", 0, False, True)
    unknown = RawDataElement(Tag(0x00091001), "UN", 4, b"ABCD", 0, False, True)
    for raw in (big, private_implicit, sequence, unknown):
        assert element_json(raw, bulk_threshold=BULK_DATA_THRESHOLD, bulk_uri=BULK_OMITTED_URI) is None


# How the header reads each attribute it types (dicom/header.py), and with what.
CONSUMERS: dict[str, Any] = {
    **dict.fromkeys(
        (
            "PatientID",
            "PatientName",
            "PatientSex",
            "AccessionNumber",
            "StudyDescription",
            "ReferringPhysicianName",
            "Modality",
            "SeriesDescription",
            "BodyPartExamined",
        ),
        clean_text,
    ),
    **dict.fromkeys(("PatientBirthDate", "StudyDate"), parse_da),
    "StudyTime": parse_tm,
    **dict.fromkeys(("SeriesNumber", "InstanceNumber", "Rows", "Columns", "NumberOfFrames"), to_int),
    **dict.fromkeys(("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"), str),
}


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_typed_attributes_read_from_the_bytes_equal_pydicoms(path: Path) -> None:
    """`ParsedHeader.get` answers what `Dataset.get` answers, as the header consumes it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:  # noqa: BLE001 - not a file pydicom reads: nothing to compare
            return
        header = ParsedHeader(pydicom.dcmread(path, stop_before_pixels=True, force=True))
        for keyword, consume in CONSUMERS.items():
            try:
                expected = consume(ds.get(keyword))
            except Exception:  # noqa: BLE001, S112 - pydicom cannot convert it: the header may not either
                continue
            assert consume(header.get(keyword)) == expected, keyword
