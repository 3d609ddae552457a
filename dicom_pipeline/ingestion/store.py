"""Store: staged files -> the raw store at deterministic keys, identical objects skipped."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dicom_pipeline.domain.metadata import ExtractedStudy, InstanceRecord
from dicom_pipeline.runtime import Runtime
from dicom_pipeline.storage import RawStore


@dataclass(frozen=True)
class StoreReport:
    written: int
    unchanged: int
    bytes_written: int


def store_raw(runtime: Runtime, extracted: ExtractedStudy) -> StoreReport:
    """Objects are written before their rows exist: the database never points at a missing
    file. A run that fails after this step leaves complete, correct objects that the next
    attempt finds identical and skips."""
    records = extracted.new_records
    store = runtime.raw_store
    with ThreadPoolExecutor(max_workers=runtime.settings.download_concurrency) as pool:
        results = list(pool.map(lambda record: _put(store, record), records))
    written = [r for r, wrote in zip(records, results, strict=True) if wrote]
    return StoreReport(
        written=len(written),
        unchanged=len(records) - len(written),
        bytes_written=sum(r.size_bytes for r in written),
    )


def _put(store: RawStore, record: InstanceRecord) -> bool:
    assert record.staged_path is not None
    return store.put(record.storage_key, Path(record.staged_path), record.sha256)
