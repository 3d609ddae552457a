"""Many studies in one run (backfill partitions, reconciliation), a few at a time.

Each study goes through the one use case, with its own correlation id; one failure is
dead-lettered and never stops the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import get_args

from dicom_pipeline.db.repository import Status
from dicom_pipeline.domain.identifiers import new_correlation_id
from dicom_pipeline.ingestion.study import ABSENT, IngestStudy, StudyResult, ingest_study
from dicom_pipeline.runtime import Runtime


@dataclass
class BatchReport:
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[StudyResult] = field(default_factory=list)

    def add(self, result: StudyResult) -> None:
        self.counts[result.status] += 1
        if result.failed:
            self.failures.append(result)

    def as_dict(self) -> dict[str, int]:
        # Every status a study can end in, so the counts always add up to the studies found.
        return {key: self.counts.get(key, 0) for key in (*get_args(Status), ABSENT, "failed")}


def ingest_studies(
    runtime: Runtime,
    orthanc_ids: Iterable[str],
    *,
    trigger: str,
    run_id: str | None,
    concurrency: int = 4,
    on_result: Callable[[StudyResult], None] | None = None,
) -> BatchReport:
    report = BatchReport()

    def one(orthanc_id: str) -> StudyResult:
        command = IngestStudy(orthanc_id, trigger=trigger, correlation_id=new_correlation_id(), run_id=run_id)
        return ingest_study(runtime, command)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="study") as pool:
        for result in pool.map(one, orthanc_ids):
            report.add(result)
            if on_result is not None:
                on_result(result)
    return report
