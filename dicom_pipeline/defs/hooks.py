"""Failure hook: after retries are exhausted, a dead letter (row + outbox event)."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster import DagsterEventType

from dicom_pipeline.db.dead_letters import DeadLetterInput
from dicom_pipeline.defs import tags
from dicom_pipeline.domain.identifiers import correlation_id_or_new
from dicom_pipeline.errors import PipelineError
from dicom_pipeline.ingestion.dead_letter import write_dead_letter
from dicom_pipeline.ingestion.requests import request_failed
from dicom_pipeline.runtime import get_runtime


def _root_cause(exc: BaseException | None) -> BaseException | None:
    # Permanent errors arrive wrapped in dg.Failure; the original carries the details.
    while isinstance(exc, dg.Failure) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _attempts(context: dg.HookContext) -> int:
    records = context.instance.all_logs(context.run_id, of_type=DagsterEventType.STEP_RESTARTED)
    return 1 + sum(1 for r in records if r.step_key == context.step_key)


def _extract_config(run_config: Mapping[str, Any]) -> dict[str, Any]:
    ops = run_config.get("ops") or {}
    extract = ops.get("extract_study") or {}
    config = extract.get("config") or {}
    return dict(config) if isinstance(config, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dg.failure_hook(required_resource_keys={"ingestion"})
def dead_letter_on_failure(context: dg.HookContext) -> None:
    run = context.instance.get_run_by_id(context.run_id)
    run_tags = dict(run.tags) if run is not None else {}
    op_config = _extract_config(run.run_config if run is not None else {})
    exc = _root_cause(context.op_exception)
    runtime = get_runtime()
    error = f"{type(exc).__name__}: {exc}" if exc is not None else "no exception recorded"
    write_dead_letter(
        runtime,
        DeadLetterInput(
            correlation_id=correlation_id_or_new(run_tags.get(tags.CORRELATION_ID) or op_config.get("correlation_id")),
            trigger=run_tags.get(tags.TRIGGER) or op_config.get("trigger"),
            study_instance_uid=run_tags.get(tags.STUDY_UID) or getattr(exc, "study_uid", None),
            orthanc_id=_text(run_tags.get(tags.ORTHANC_ID) or op_config.get("orthanc_study_id")),
            instance=getattr(exc, "instance", None),
            run_id=context.run_id,
            failed_op=context.op.name,
            error_type=type(exc).__name__ if exc is not None else "Unknown",
            error_message=str(exc) if exc is not None else "no exception recorded",
            transient=isinstance(exc, PipelineError) and exc.transient,
            attempts=_attempts(context),
        ),
    )
    # Only once the dead letter is durable: a request that reads "failed" has its letter.
    request_failed(runtime, run_tags.get(tags.REQUEST_ID), f"{context.op.name} failed: {error}")
