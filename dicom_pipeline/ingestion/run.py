"""Run ingest_study in this process (the CLI's `ingest`), through the same Dagster job."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from dicom_pipeline.defs import tags
from dicom_pipeline.defs.jobs import ingest_study
from dicom_pipeline.defs.ops import STUDY_OP
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.domain.identifiers import correlation_id_or_new


def dagster_instance() -> dg.DagsterInstance:
    """The configured instance when DAGSTER_HOME is set (runs show in the UI), else ephemeral."""
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def ingest_in_process(
    orthanc_id: str,
    *,
    trigger: str = "cli",
    correlation_id: str | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dict[str, Any]:
    """Returns the run's summary: status created/updated/unchanged, or failed with the reason."""
    correlation_id = correlation_id_or_new(correlation_id)
    result = ingest_study.execute_in_process(
        run_config=tags.study_run_config(orthanc_id, correlation_id, trigger),
        tags=tags.study_run_tags(orthanc_id, correlation_id, trigger),
        resources={"ingestion": IngestionResource()},
        instance=instance or dagster_instance(),
        raise_on_error=False,
    )
    if result.success:
        summary: dict[str, Any] = result.output_for_node(STUDY_OP)
        return {"run_id": result.run_id, **summary}
    failures = [event for event in result.all_events if event.is_step_failure]
    reason = "run failed"
    if failures:
        data = failures[-1].step_failure_data
        reason = data.error.message.strip() if data and data.error else reason
        reason = reason.removeprefix("dagster._core.definitions.events.Failure: ")
    return {
        "orthanc_id": orthanc_id,
        "run_id": result.run_id,
        "status": "failed",
        "correlation_id": correlation_id,
        "error": reason.splitlines()[0][:500] if reason else reason,
    }
