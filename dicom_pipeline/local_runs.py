"""Dagster runs inside this process, for the command line: `ingest`, `backfill`, `dlq redrive`.

They execute the code location's own jobs (`build_definitions`), with resources built from
this process's settings, and are recorded in the Dagster instance when `DAGSTER_HOME` is
set (so they show in the UI), in a throw-away instance otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import dagster as dg

from dicom_pipeline.db.dead_letter_queries import list_dead_letters
from dicom_pipeline.db.engine import transaction
from dicom_pipeline.definitions import build_definitions
from dicom_pipeline.defs import tags
from dicom_pipeline.domain.identifiers import correlation_id_or_new
from dicom_pipeline.errors import PipelineError
from dicom_pipeline.ingestion.study import PUBLISH
from dicom_pipeline.orthanc.client import OrthancClient
from dicom_pipeline.runtime import Runtime
from dicom_pipeline.settings import Settings, get_settings


def dagster_instance() -> dg.DagsterInstance:
    """The configured instance when DAGSTER_HOME is set (runs show in the UI), else ephemeral."""
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def _job(name: str, settings: Settings | None) -> dg.JobDefinition:
    defs = build_definitions(settings or get_settings(), resources_from_env=False)
    return defs.resolve_job_def(name)


def ingest_in_process(
    orthanc_id: str,
    *,
    trigger: str = "cli",
    correlation_id: str | None = None,
    instance: dg.DagsterInstance | None = None,
    settings: Settings | None = None,
    study_uid: str | None = None,
) -> dict[str, Any]:
    """Runs ingest_study; returns the run's summary: created/updated/unchanged/superseded, or failed with the reason.

    The run is tagged with the study's Study Instance UID from its creation, like every
    study run: `study_uid`, or Orthanc's, or none when Orthanc cannot say (the run does).
    """
    correlation_id = correlation_id_or_new(correlation_id)
    settings = settings or get_settings()
    if study_uid is None:
        study_uid = _study_uid_in_orthanc(settings, orthanc_id)
    result = _job("ingest_study", settings).execute_in_process(
        run_config=tags.study_run_config(orthanc_id, correlation_id, trigger),
        tags=tags.study_run_tags(orthanc_id, correlation_id, trigger, study_uid),
        instance=instance or dagster_instance(),
        raise_on_error=False,
    )
    if result.success:
        summary: dict[str, Any] = result.output_for_node(PUBLISH)
        return {"run_id": result.run_id, **summary}
    failures = [event for event in result.all_events if event.is_step_failure]
    reason = "run failed"
    data = failures[-1].step_failure_data if failures else None
    if data is not None and data.error is not None:
        # The op's own error (StepFailed: which step, after how many attempts, and why),
        # under the execution error Dagster wraps it in.
        error = data.error
        while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
            error = error.cause
        reason = error.message.strip().split(": ", 1)[-1]
    return {
        "orthanc_id": orthanc_id,
        "run_id": result.run_id,
        "status": "failed",
        "correlation_id": correlation_id,
        "error": reason.splitlines()[0][:500] if reason else reason,
    }


def _study_uid_in_orthanc(settings: Settings, orthanc_id: str) -> str | None:
    try:
        with OrthancClient.from_settings(settings) as orthanc:
            state = orthanc.study_state(orthanc_id)
    except PipelineError:
        return None
    return state.study_uid if state is not None else None


def run_backfill(
    first: dt.date, last: dt.date, progress: Callable[[str], None], settings: Settings | None = None
) -> dict[str, int]:
    """The Study Date partitions of a range, one run each, in this process."""
    job = _job("backfill_by_study_date", settings)
    instance = dagster_instance()
    totals: Counter[str] = Counter()
    days = (last - first).days + 1
    for index in range(days):
        day = (first + dt.timedelta(days=index)).isoformat()
        result = job.execute_in_process(
            partition_key=day, instance=instance, raise_on_error=False, tags={"dicom/trigger": "backfill-cli"}
        )
        if result.success:
            counts: dict[str, int] = result.output_for_node("ingest_study_date")
            totals.update(counts)
            progress(f"[{index + 1}/{days}] {day}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        else:
            totals["failed_partitions"] += 1
            progress(f"[{index + 1}/{days}] {day}: partition run {result.run_id} failed")
    keys = ("found", "created", "updated", "unchanged", "superseded", "failed", "failed_partitions")
    return {key: totals.get(key, 0) for key in keys}


def redrive_dead_letters(runtime: Runtime, letter_id: int | None) -> list[dict[str, Any]]:
    """Ingest dead-lettered studies again, one ingest_study run per study; one result per letter."""
    with transaction(runtime.engine) as session:
        letters = [
            (d.id, d.orthanc_id, d.correlation_id, d.study_instance_uid)
            for d in list_dead_letters(session, letter_id=letter_id)
        ]
    instance = dagster_instance()
    done: dict[str, dict[str, Any]] = {}
    results = []
    for dead_letter_id, orthanc_id, correlation_id, study_uid in letters:
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
                orthanc_id,
                trigger="redrive",
                correlation_id=correlation_id,
                instance=instance,
                settings=runtime.settings,
                study_uid=study_uid,
            )
        results.append({"dead_letter_id": dead_letter_id, **done[orthanc_id]})
    return results
