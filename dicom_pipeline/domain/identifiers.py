"""Validation of every identifier that comes from outside before it is used as a key or path."""

from __future__ import annotations

import re
import uuid

from dicom_pipeline.errors import InvalidIdentifier

# DICOM UIDs are digits and dots, at most 64 characters (PS3.5 9.1). Components with a
# leading zero break the standard but occur in real archives; they are accepted because
# they are harmless as keys, and refusing them would dead-letter real studies.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_ORTHANC_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def validate_uid(value: object, attribute: str) -> str:
    """Return the UID, or raise InvalidIdentifier naming the attribute and the rule broken."""
    if not isinstance(value, str) or not value:
        raise InvalidIdentifier(f"{attribute} is missing")
    text = value.strip("\x00 ")
    if len(text) > 64:
        raise InvalidIdentifier(f"{attribute} {text[:70]!r} is longer than 64 characters")
    if not _UID.match(text):
        raise InvalidIdentifier(f"{attribute} {text[:70]!r} must be digits separated by dots")
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
