"""DICOM JSON (PS3.18 Annex F) of one element straight from its bytes, for the plain cases.

pydicom's `DataElement.to_json_dict` first turns each raw element into Python value objects
(dictionary lookups, value classes, validation, MultiValue), ~25 us per element: a CT
header of 250 elements cost 7 ms, the largest share of ingestion's CPU (bench/RESULTS.md).
The plain cases (little endian, an unambiguous VR, numbers that are numbers, text that is
ASCII) are encoded here from the bytes, the way pydicom's converters read them. Anything
else returns None and is left to pydicom: sequences, AT, UN, ambiguous or unknown VRs,
non-ASCII or ISO 2022 text, big endian, values pydicom would repair or reject, and every
pydicom configuration but the default. Equality with `to_json_dict` is tested element by
element (tests/unit/test_dicom_json_fidelity.py, tests/unit/test_json_model.py).
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

from pydicom import config
from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement

_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
_BINARY = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
# pydicom's convert_string / convert_UI: decoded with the default encoding whatever the
# character set, trailing spaces and NULs dropped, split on backslash.
_STRINGS = frozenset({"AS", "CS", "DA", "DT", "TM", "UI"})
# convert_text (split) and convert_single_string: decoded with the character set.
_TEXT_SPLIT = frozenset({"LO", "SH", "UC"})
_TEXT_WHOLE = frozenset({"LT", "ST", "UT"})
_IS = re.compile(r" *[+-]?[0-9]+ *")
_DS = re.compile(r" *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *")
# pydicom rewrites the first value of the LUT descriptors (pydicom.tag._LUT_DESCRIPTOR_TAGS).
_LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})


def pydicom_defaults() -> bool:
    """The converters here are pydicom's with its default configuration only."""
    return not (
        config.datetime_conversion
        or config.use_DS_numpy
        or config.use_IS_numpy
        or config.use_DS_decimal
        or config.settings.reading_validation_mode == config.RAISE
    )


def element_json(raw: RawDataElement, *, bulk_threshold: int, bulk_uri: str) -> dict[str, Any] | None:
    """The element as `DataElement.to_json_dict` gives it, or None when pydicom must decide.
    Never a string with NUL in it (JSONB cannot hold one)."""
    if not raw.is_little_endian or raw.tag in _LUT_DESCRIPTORS:
        return None
    vr = raw.VR
    if vr is None:  # implicit VR: the dictionary's, for public tags only
        if raw.tag.is_private:
            return None
        try:
            vr = dictionary_VR(raw.tag)
        except KeyError:
            return None
    value: bytes = raw.value or b""
    if not value:
        return {"vr": vr} if vr in _ALL else None
    if vr in _NUMBERS:
        return _numbers(vr, value)
    if vr in _BINARY:
        if len(value) > (bulk_threshold // 4) * 3:
            return {"vr": vr, "BulkDataURI": bulk_uri}
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}
    if vr in _STRINGS:
        return _values(vr, value.decode(default_encoding).rstrip(" \x00").split("\\"))
    if vr == "AE":
        return _values(vr, [item.strip() for item in value.decode(default_encoding).split("\\")])
    if vr == "IS":
        return _numeric_strings(vr, value.decode(default_encoding).rstrip(" \x00"), _IS, int)
    if vr == "DS":
        return _numeric_strings(vr, value.decode(default_encoding).strip().rstrip(" \x00"), _DS, float)
    # Text in the dataset's character set: ASCII without ESC reads the same in every one
    # DICOM defines (ISO 2022 switches sets with ESC sequences of 7-bit bytes).
    if not value.isascii() or b"\x1b" in value:
        return None
    if vr in _TEXT_SPLIT:
        return _values(vr, [item.rstrip("\x00 ") for item in value.decode("ascii").split("\\")])
    if vr in _TEXT_WHOLE:
        return _values(vr, [value.decode("ascii").rstrip("\x00 ")])
    if vr == "PN":
        names = value.rstrip(b"\x00 ").decode("ascii").split("\\")
        # One component group each (no '='): pydicom's PersonName keeps the text as is.
        if any("=" in name for name in names):
            return None
        values = _values(vr, names)
        if values is not None and "Value" in values:
            values["Value"] = [{"Alphabetic": name} for name in names]
        return values
    return None


_ALL = frozenset(_NUMBERS) | _BINARY | _STRINGS | _TEXT_SPLIT | _TEXT_WHOLE | {"AE", "IS", "DS", "PN"}


def _numbers(vr: str, value: bytes) -> dict[str, Any] | None:
    code = _NUMBERS[vr]
    size = struct.calcsize("=" + code)
    if len(value) % size:
        return None  # pydicom raises or turns it into UN
    return {"vr": vr, "Value": list(struct.unpack(f"<{len(value) // size}{code}", value))}


def _values(vr: str, items: list[str]) -> dict[str, Any] | None:
    """A single empty value is an empty element; an empty item among several is left to
    pydicom (its value classes treat it per VR), and so is a NUL inside a value (the
    caller's NUL removal then applies to pydicom's value, as it always did)."""
    if any("\x00" in item for item in items):
        return None
    if len(items) == 1:
        return {"vr": vr, "Value": items} if items[0] else {"vr": vr}
    if not all(items):
        return None
    return {"vr": vr, "Value": items}


def _numeric_strings(
    vr: str, text: str, pattern: re.Pattern[str], kind: type[int] | type[float]
) -> dict[str, Any] | None:
    if not text:
        return None
    items = text.split("\\")
    if not all(pattern.fullmatch(item) for item in items):
        return None
    return {"vr": vr, "Value": [kind(item) for item in items]}
