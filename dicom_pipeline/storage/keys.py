"""Object keys: built from UIDs, safe on every backend whatever the UIDs hold.

A conforming UID (digits and dots) is its own key component; any other is replaced by
`x` + the first 40 hex digits of its sha256, so a file or object name never carries a
character a filesystem or object store could misread. This is the last check before a path.
"""

from __future__ import annotations

import hashlib
import re

from dicom_pipeline.domain.identifiers import uid_conforms
from dicom_pipeline.errors import InvalidIdentifier

_COMPONENT = r"(?:[0-9.]{1,64}|x[0-9a-f]{40})"
_KEY = re.compile(rf"^{_COMPONENT}/{_COMPONENT}/{_COMPONENT}\.dcm$")


def key_component(uid: str) -> str:
    if uid_conforms(uid):
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8")).hexdigest()[:40]


def storage_key(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """Deterministic object key of one instance."""
    return validate_key(f"{key_component(study_uid)}/{key_component(series_uid)}/{key_component(sop_uid)}.dcm")


def study_prefix(study_uid: str) -> str:
    """The folder (or key prefix) holding every object of one study."""
    return key_component(study_uid) + "/"


def validate_key(key: str) -> str:
    if not _KEY.match(key) or "/." in key or key.startswith("."):
        raise InvalidIdentifier(f"storage key {key[:200]!r} is not <study>/<series>/<sop>.dcm")
    return key
