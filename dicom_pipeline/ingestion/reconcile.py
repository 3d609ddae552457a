"""Reconciliation: which Orthanc studies are missing from the database or changed since.

Pages through Orthanc's study list; per page one SQL query compares Orthanc's LastUpdate
with what the last successful ingestion saw, so studies already up to date cost nothing
more than their share of one page.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.models import OrthancStudySeen
from dicom_pipeline.runtime import Runtime


@dataclass(frozen=True)
class StaleStudy:
    orthanc_id: str
    reason: str  # "missing" or "changed"


def find_stale_studies(runtime: Runtime, page_size: int = 1000) -> Iterator[StaleStudy]:
    since = 0
    with runtime.orthanc() as orthanc:
        while True:
            page = orthanc.studies_page(since, page_size)
            if not page:
                return
            since += len(page)
            # Unstable studies are still receiving instances; they will announce themselves.
            stable = {item["ID"]: item.get("LastUpdate") for item in page if item.get("IsStable", True)}
            with transaction(runtime.engine) as session:
                seen = {
                    row.orthanc_id: row
                    for row in session.execute(
                        select(
                            OrthancStudySeen.orthanc_id,
                            OrthancStudySeen.last_update,
                            OrthancStudySeen.stable_when_seen,
                        ).where(OrthancStudySeen.orthanc_id.in_(list(stable)))
                    ).all()
                }
            for orthanc_id, last_update in stable.items():
                row = seen.get(orthanc_id)
                if row is None:
                    yield StaleStudy(orthanc_id, "missing")
                elif row.last_update != last_update or not row.stable_when_seen:
                    # Read while unstable: instances may have arrived within LastUpdate's second.
                    yield StaleStudy(orthanc_id, "changed")
            if len(page) < page_size:
                return
