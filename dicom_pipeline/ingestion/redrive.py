"""Re-drive dead letters: ingest their studies again through ingest_study."""

from __future__ import annotations

from typing import Any

from dicom_pipeline.db.dead_letter_queries import list_dead_letters
from dicom_pipeline.db.engine import transaction
from dicom_pipeline.ingestion.run import dagster_instance, ingest_in_process
from dicom_pipeline.runtime import get_runtime


def redrive_dead_letters(letter_id: int | None) -> list[dict[str, Any]]:
    """One result per dead letter; letters of the same study share one ingestion."""
    runtime = get_runtime()
    with transaction(runtime.engine) as session:
        letters = [(d.id, d.orthanc_id, d.correlation_id) for d in list_dead_letters(session, letter_id=letter_id)]
    instance = dagster_instance()
    done: dict[str, dict[str, Any]] = {}
    results = []
    for dead_letter_id, orthanc_id, correlation_id in letters:
        if orthanc_id is None:
            results.append(
                {
                    "dead_letter_id": dead_letter_id,
                    "status": "failed",
                    "error": "no valid Orthanc study id recorded; nothing to re-drive",
                }
            )
            continue
        if orthanc_id not in done:
            done[orthanc_id] = ingest_in_process(
                orthanc_id, trigger="redrive", correlation_id=correlation_id, instance=instance
            )
        results.append({"dead_letter_id": dead_letter_id, **done[orthanc_id]})
    return results
