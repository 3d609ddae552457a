"""The raw store port."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO, Protocol


class RawStore(Protocol):
    """Where raw DICOM files live, at deterministic keys."""

    backend: str

    def location(self, key: str = "") -> str:
        """A URL for a key (or the store's root), for events and people."""
        ...

    def put(self, key: str, source: Path, sha256: str) -> bool:
        """Store the file at key atomically; False when an identical object was already there."""
        ...

    def sha256_of(self, key: str) -> str | None:
        """The stored object's sha256, or None when there is no object at key."""
        ...

    def open(self, key: str) -> BinaryIO: ...

    def delete_study(self, study_uid: str) -> int:
        """Remove every object under `<study uid>/`; returns how many. Idempotent."""
        ...


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
