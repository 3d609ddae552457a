"""Validation of every identifier that comes from outside before it is used as a key or path."""

from __future__ import annotations

import re
import uuid

from dicom_pipeline.errors import InvalidIdentifier

# Conforming DICOM UIDs are digits and dots, at most 64 characters (PS3.5 9.1). Components
# with a leading zero break the standard too but are common and harmless: they count as
# conforming (their own storage key component).
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_ORTHANC_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# A non-conforming UID found in a file is kept verbatim (Orthanc keeps it so); only what no
# database column or log line can carry is refused.
MAX_UID_LENGTH = 1024


def uid_conforms(uid: str) -> bool:
    return len(uid) <= 64 and bool(_UID.match(uid))


def read_uid(value: object, attribute: str) -> str:
    """A UID as a file (or Orthanc) holds it, padding removed, conforming or not.

    Raises InvalidIdentifier only when it is missing, or cannot be stored at all (control
    characters, longer than MAX_UID_LENGTH). Check `uid_conforms` to flag the others.
    """
    if not isinstance(value, str) or not value.strip("\x00 "):
        raise InvalidIdentifier(f"{attribute} is missing")
    text = value.strip("\x00 ")
    if len(text) > MAX_UID_LENGTH:
        raise InvalidIdentifier(f"{attribute} is longer than {MAX_UID_LENGTH} characters")
    if _CONTROL.search(text):
        raise InvalidIdentifier(f"{attribute} contains control characters")
    return text


def is_orthanc_id(value: str) -> bool:
    return bool(_ORTHANC_ID.match(value))


def validate_orthanc_id(value: str) -> str:
    """Orthanc ids are SHA-1 based: five groups of eight lowercase hex digits."""
    if not is_orthanc_id(value):
        raise InvalidIdentifier(f"{value[:80]!r} is not an Orthanc id (five groups of 8 hex digits)")
    return value


def is_correlation_id(value: str) -> bool:
    return bool(_CORRELATION_ID.match(value))


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def correlation_id_or_new(value: str | None) -> str:
    """A well-formed correlation id is kept; anything else is replaced, never echoed."""
    if value and is_correlation_id(value):
        return value
    return new_correlation_id()
