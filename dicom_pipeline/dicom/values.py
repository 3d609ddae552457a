"""Typed values from DICOM text: DA, TM and PN, keeping the raw text when it is not valid."""

from __future__ import annotations

import datetime as dt
import re

from dicom_pipeline.domain.metadata import DicomDate

_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")


def parse_da(raw: str | None) -> DicomDate:
    text = _clean(raw)
    if not text:
        return DicomDate(raw=None)
    # Old ACR-NEMA style dates ("2024.03.01") still appear in archives.
    candidate = text.replace(".", "") if len(text) == 10 else text
    try:
        return DicomDate(raw=text, date=dt.datetime.strptime(candidate, "%Y%m%d").date())
    except ValueError:
        return DicomDate(raw=text)


def parse_tm(raw: str | None) -> DicomDate:
    text = _clean(raw)
    if not text:
        return DicomDate(raw=None)
    match = _TM.match(text.replace(":", ""))
    if match is None:
        return DicomDate(raw=text)
    hours, minutes, seconds, fraction = match.groups()
    try:
        value = dt.time(
            int(hours),
            int(minutes or 0),
            min(int(seconds or 0), 59),  # a leap second (60) is legal in TM
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        return DicomDate(raw=text)
    return DicomDate(raw=text, time=value)


def _clean(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = str(raw).strip("\x00 ")
    return text or None


def clean_text(value: object) -> str | None:
    """A printable text value: None for empty, NULs removed (PostgreSQL text refuses them)."""
    if value is None:
        return None
    text = str(value).replace("\x00", "").strip()
    return text or None


def to_int(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        try:
            return int(float(str(value).strip()))
        except ValueError:
            return None
