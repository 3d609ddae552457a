"""Many studies in one process with bounded concurrency; one failure never stops the others."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dicom_pipeline.ingestion.study import StudyResult, ingest_study_now
from dicom_pipeline.runtime import Runtime


@dataclass
class BatchReport:
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[StudyResult] = field(default_factory=list)

    def add(self, result: StudyResult) -> None:
        self.counts[result.status] += 1
        if result.outcome is None:
            self.failures.append(result)

    def as_dict(self) -> dict[str, int]:
        return {key: self.counts.get(key, 0) for key in ("created", "updated", "unchanged", "superseded", "failed")}


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
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="study") as pool:
        for result in pool.map(lambda oid: ingest_study_now(runtime, oid, trigger=trigger, run_id=run_id), orthanc_ids):
            report.add(result)
            if on_result is not None:
                on_result(result)
    return report
