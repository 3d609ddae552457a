"""Local filesystem store: temp file in the same folder, fsync, rename; never a partial file."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from dicom_pipeline.errors import StorageError
from dicom_pipeline.storage.base import file_sha256
from dicom_pipeline.storage.keys import study_prefix, validate_key


class LocalRawStore:
    backend = "file"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def location(self, key: str = "") -> str:
        return f"file://{self.root / key}" if key else f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def sha256_of(self, key: str) -> str | None:
        path = self._path(key)
        return file_sha256(path) if path.exists() else None

    def put(self, key: str, source: Path, sha256: str) -> bool:
        target = self._path(key)
        try:
            if target.exists() and target.stat().st_size == source.stat().st_size and file_sha256(target) == sha256:
                return False
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
            try:
                # A rename within one filesystem is free; the staged file is ours to consume.
                # Across filesystems, copy into a temp file beside the target first.
                if source.stat().st_dev == target.parent.stat().st_dev:
                    os.link(source, temp)
                else:
                    shutil.copyfile(source, temp)
                with open(temp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(temp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            _fsync_dir(target.parent)
        except OSError as exc:
            raise StorageError(f"cannot store {key} under {self.root}: {exc.strerror or exc}") from exc
        return True

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def delete_study(self, study_uid: str) -> int:
        folder = self.root / study_prefix(study_uid).rstrip("/")
        if not folder.is_dir():
            return 0
        removed = sum(1 for path in folder.rglob("*.dcm"))
        try:
            shutil.rmtree(folder)
            _fsync_dir(self.root)
        except OSError as exc:
            raise StorageError(f"cannot delete {study_uid} under {self.root}: {exc.strerror or exc}") from exc
        return removed


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
