"""The study job's ops: the four steps of "ingest a study", one op each.

Each op calls one step function of the use case (ingestion/study.py), under the same
retry policy every other caller uses; a step that gives up raises StepFailed, and the
job's failure hook (defs/hooks.py) writes the dead letter through the same writer. The
values between ops are small typed dataclasses (defs/step_outputs.py keeps a durable copy
of the two a re-execution needs). Each op reports what it did as its output's metadata and,
when it wrote an asset, as that asset's materialization, and logs nothing else: every
event is a row in Dagster's event log.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import dagster as dg
from opentelemetry import trace
from pydantic import Field

from dicom_pipeline.db.repository import VersionOutcome
from dicom_pipeline.defs import lineage, tags
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.defs.step_outputs import STEP_OUTPUTS, forget_run_outputs
from dicom_pipeline.domain.identifiers import correlation_id_or_new, is_correlation_id
from dicom_pipeline.ingestion import study as steps
from dicom_pipeline.ingestion.study import IngestStudy
from dicom_pipeline.logs import bound_correlation_id
from dicom_pipeline.tracing import span

log = logging.getLogger(__name__)


@contextmanager
def _in_step(context: dg.OpExecutionContext, command: IngestStudy) -> Iterator[None]:
    """An op's work: its log lines carry the study's correlation id, and it is a span of the
    study's trace, within the run's (the worker's run span is current), or continuing the
    trace the run's tag names when the run executes elsewhere (dicom_pipeline/tracing.py)."""
    parent = None if trace.get_current_span().get_span_context().is_valid else context.run.tags.get(tags.TRACEPARENT)
    attributes = {"dagster.run_id": context.run_id, "dicom.orthanc_id": command.orthanc_id}
    with bound_correlation_id(command.correlation_id), span(context.op.name, parent=parent, attributes=attributes):
        yield


class StudyRunConfig(dg.Config):
    orthanc_study_id: str = Field(description="Orthanc's id of the study (five groups of 8 hex digits).")
    correlation_id: str | None = Field(default=None, description="Carried into logs, rows and Kafka headers.")
    trigger: str = Field(default="manual", description="What asked for this run: sensor, webhook, cli, backfill...")


def study_command(run: dg.DagsterRun) -> IngestStudy:
    """The study a run ingests, who asked, and where the answer goes, as every op (and the
    failure hook) of the run reads it: from the run's config and tags, so a re-executed run
    carries the same correlation id."""
    ops = cast(dict[str, Any], run.run_config.get("ops") or {})
    config = cast(dict[str, Any], (ops.get(steps.EXTRACT) or {}).get("config") or {})
    correlation_id = config.get("correlation_id") or run.tags.get(tags.CORRELATION_ID)
    if not correlation_id:
        # Launched by hand without one: the root run's id, the same in every op and re-execution.
        root = run.root_run_id or run.run_id
        correlation_id = root if is_correlation_id(root) else None
    return IngestStudy(
        orthanc_id=str(config.get("orthanc_study_id") or run.tags.get(tags.ORTHANC_ID) or ""),
        trigger=str(config.get("trigger") or run.tags.get(tags.TRIGGER) or "manual"),
        correlation_id=correlation_id_or_new(correlation_id),
        run_id=run.run_id,
        request_id=run.tags.get(tags.REQUEST_ID),
    )


def _record_materialization(
    context: dg.OpExecutionContext, key: dg.AssetKey, command: IngestStudy, **metadata: Any
) -> None:
    """Logs that this step wrote `key` (the lineage the UI's asset graph shows)."""
    values = {name: value if value is not None else "" for name, value in metadata.items()}
    context.log_event(dg.AssetMaterialization(key, metadata={**values, "correlation_id": command.correlation_id}))


@dg.op(
    name=steps.EXTRACT,
    out={"extraction": dg.Out(steps.Extraction, io_manager_key=STEP_OUTPUTS)},
    tags={"kind": "orthanc"},
    description="List the study in Orthanc, stream each new file to staging (hashed), read its header.",
)
def extract_study(
    context: dg.OpExecutionContext, config: StudyRunConfig, ingestion: IngestionResource
) -> dg.Output[steps.Extraction]:
    command = study_command(context.run)
    with _in_step(context, command):
        extraction = steps.extract(ingestion.runtime(), command)
    study = extraction.study
    if study is None:
        return dg.Output(extraction, metadata={"orthanc_id": command.orthanc_id, "in_orthanc": False})
    downloaded = len(study.new_records)
    return dg.Output(
        extraction,
        metadata={
            "study_uid": study.study_instance_uid,
            "instances": len(study.instances),
            "downloaded": downloaded,
            "already_stored": len(study.instances) - downloaded,
        },
    )


@dg.op(
    name=steps.STORE,
    # Nothing to hand on (persist waits for it), but not the in-memory IO manager either:
    # Dagster refuses to re-execute a job whose steps use one.
    out=dg.Out(dg.Nothing, io_manager_key=STEP_OUTPUTS),
    tags={"kind": "storage"},
    description="Move the staged files into the raw store at deterministic keys (identical objects skipped).",
)
def store_raw(context: dg.OpExecutionContext, ingestion: IngestionResource, extraction: steps.Extraction) -> Any:
    command = study_command(context.run)
    with _in_step(context, command):
        report = steps.store(ingestion.runtime(), extraction)
    if report.written:
        _record_materialization(
            context,
            lineage.RAW_STORE,
            command,
            study_uid=extraction.study_uid,
            written=report.written,
            bytes_written=report.bytes_written,
        )
    yield dg.Output(None, metadata={**report.__dict__})


@dg.op(
    name=steps.PERSIST,
    ins={"extraction": dg.In(steps.Extraction), "stored": dg.In(dg.Nothing)},
    # No Dagster type: None (nothing to record) is a value here, not a skipped output.
    out={"outcome": dg.Out(io_manager_key=STEP_OUTPUTS)},
    tags={"kind": "postgres"},
    description="One transaction: the rows, a new study version if the content changed, and its outbox event.",
)
def persist_metadata(context: dg.OpExecutionContext, ingestion: IngestionResource, extraction: steps.Extraction) -> Any:
    command = study_command(context.run)
    with _in_step(context, command):
        outcome = steps.persist(ingestion.runtime(), command, extraction)
    if outcome is not None and outcome.event_id and outcome.status in ("created", "updated", "deleted"):
        _record_materialization(
            context,
            lineage.METADATA_TABLES,
            command,
            study_instance_uid=outcome.study_instance_uid,
            version=outcome.version,
            status=outcome.status,
            added=outcome.added,
        )
    metadata = outcome.as_dict() if outcome is not None else {"status": steps.ABSENT}
    yield dg.Output(outcome, output_name="outcome", metadata={k: v for k, v in metadata.items() if v is not None})


@dg.op(
    name=steps.PUBLISH,
    out=dg.Out(dict, io_manager_key=STEP_OUTPUTS),
    tags={"kind": "kafka"},
    description="Send the study's pending outbox events (acks=all); what Kafka does not take waits for the relay.",
)
def publish_events(context: dg.OpExecutionContext, ingestion: IngestionResource, outcome: VersionOutcome | None) -> Any:
    command = study_command(context.run)
    runtime = ingestion.runtime()
    with _in_step(context, command):
        published = steps.publish(runtime, command, outcome)
    if published and outcome is not None:
        _record_materialization(
            context,
            lineage.EVENTS_TOPIC,
            command,
            study_instance_uid=outcome.study_instance_uid,
            version=outcome.version,
            event_id=outcome.event_id,
            events_published=published,
        )
    # The study is done: a re-execution of this run lineage has nothing to resume.
    forget_run_outputs(runtime.engine, context.run)
    result = steps.StudyResult(command.orthanc_id, command.correlation_id, outcome, events_published=published)
    summary = result.summary()
    # The one line a study's run leaves in the console (Dagster's own run events are DEBUG).
    with bound_correlation_id(command.correlation_id):
        log.info(
            f"study {summary['status']}",
            extra={
                k: summary[k]
                for k in ("study_instance_uid", "version", "events_published")
                if summary.get(k) is not None
            },
        )
    yield dg.Output(summary, metadata={k: str(v) for k, v in summary.items()})
