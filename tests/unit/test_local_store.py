"""The local store writes atomically and never rewrites an identical object."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dicom_pipeline.errors import StorageError
from dicom_pipeline.storage.local import LocalRawStore

KEY = "1.2/1.2.3/1.2.3.4.dcm"


def _source(tmp_path: Path, content: bytes) -> tuple[Path, str]:
    path = tmp_path / f"src-{hashlib.md5(content).hexdigest()}"  # noqa: S324 - a file name, not security
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def test_put_stores_the_bytes_and_skips_an_identical_object(tmp_path: Path) -> None:
    store = LocalRawStore(tmp_path / "store")
    source, digest = _source(tmp_path, b"A" * 10_000)
    assert store.put(KEY, source, digest) is True
    stat = (tmp_path / "store" / KEY).stat()
    assert store.put(KEY, source, digest) is False
    assert (tmp_path / "store" / KEY).stat().st_mtime_ns == stat.st_mtime_ns
    assert store.sha256_of(KEY) == digest
    assert not list((tmp_path / "store").rglob("*.tmp")), "no temp file is left behind"


def test_put_replaces_different_content_atomically(tmp_path: Path) -> None:
    store = LocalRawStore(tmp_path / "store")
    first, first_digest = _source(tmp_path, b"A" * 100)
    second, second_digest = _source(tmp_path, b"B" * 100)
    store.put(KEY, first, first_digest)
    assert store.put(KEY, second, second_digest) is True
    with store.open(KEY) as handle:
        assert handle.read() == b"B" * 100


def test_unwritable_store_raises_storage_error_and_leaves_no_partial_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "1.2").write_text("a file where a folder must go")
    store = LocalRawStore(root)
    source, digest = _source(tmp_path, b"C" * 100)
    with pytest.raises(StorageError, match="cannot store"):
        store.put(KEY, source, digest)
    assert not list(root.rglob("*.dcm"))
