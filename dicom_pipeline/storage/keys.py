"""Object keys are built from validated UIDs; this is the last check before a path or key."""

from __future__ import annotations

import re

from dicom_pipeline.errors import InvalidIdentifier

_KEY = re.compile(r"^[0-9.]{1,64}/[0-9.]{1,64}/[0-9.]{1,64}\.dcm$")


def validate_key(key: str) -> str:
    if not _KEY.match(key) or "/." in key or key.startswith("."):
        raise InvalidIdentifier(f"storage key {key[:200]!r} is not <study uid>/<series uid>/<sop uid>.dcm")
    return key
