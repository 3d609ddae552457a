"""The four ops of ingest_study: extract -> store -> persist -> publish.

Storage comes before persistence on purpose: a version's rows (and its event) only exist
once every one of its files is durable, so nothing downstream ever sees a row whose file
is missing. Transient errors are retried with backoff; permanent ones fail at once.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg
from pydantic import Field

from dicom_pipeline.db.repository import VersionOutcome
from dicom_pipeline.defs import lineage, tags
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.domain.identifiers import correlation_id_or_new
from dicom_pipeline.domain.metadata import ExtractedStudy
from dicom_pipeline.errors import PermanentError
from dicom_pipeline.ingestion.extract import extract_study as extract_study_step
from dicom_pipeline.ingestion.persist import persist_study_version
from dicom_pipeline.ingestion.requests import request_succeeded
from dicom_pipeline.ingestion.store import store_raw as store_raw_step
from dicom_pipeline.kafka.outbox import publish_pending_events
from dicom_pipeline.logs import bound_correlation_id, configure_logging

T = TypeVar("T")

TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=1.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


class IngestStudyConfig(dg.Config):
    orthanc_study_id: str = Field(description="Orthanc's id of the study (five groups of 8 hex digits).")
    correlation_id: str | None = Field(default=None, description="Carried into logs, rows and Kafka headers.")
    trigger: str = Field(default="manual", description="What asked for this run: sensor, webhook, cli, backfill...")


@dataclass(frozen=True)
class StudyWork:
    """What flows between the ops of one study run."""

    extracted: ExtractedStudy
    correlation_id: str
    trigger: str


@dataclass(frozen=True)
class PersistedVersion:
    outcome: VersionOutcome
    correlation_id: str


def run_step(fn: Callable[[], T]) -> T:
    """Permanent errors become a Failure that skips the retry policy."""
    try:
        return fn()
    except PermanentError as exc:
        raise dg.Failure(
            description=f"{type(exc).__name__}: {exc}",
            metadata={"error_type": type(exc).__name__, "instance": exc.instance or ""},
            allow_retries=False,
        ) from exc


@dg.op(retry_policy=TRANSIENT_RETRY, tags={"kind": "orthanc"})
def extract_study(context: dg.OpExecutionContext, config: IngestStudyConfig, ingestion: IngestionResource) -> StudyWork:
    """Stream the study's new instances from Orthanc to staging and read their headers."""
    runtime = ingestion.runtime()
    configure_logging(runtime.settings.log_level)
    correlation_id = correlation_id_or_new(config.correlation_id or context.run.tags.get(tags.CORRELATION_ID))
    with bound_correlation_id(correlation_id):
        # extract_study validates the id before it is used anywhere.
        orthanc_id = config.orthanc_study_id
        extracted = run_step(lambda: extract_study_step(runtime, orthanc_id, context.run_id))
    context.instance.add_run_tags(
        context.run_id,
        tags.study_run_tags(orthanc_id, correlation_id, config.trigger, extracted.study_instance_uid),
    )
    context.log.info(
        f"extracted study {extracted.study_instance_uid}: {len(extracted.new_records)} downloaded, "
        f"{len(extracted.instances) - len(extracted.new_records)} already stored (correlation_id={correlation_id})"
    )
    return StudyWork(extracted=extracted, correlation_id=correlation_id, trigger=config.trigger)


@dg.op(retry_policy=TRANSIENT_RETRY, tags={"kind": "storage"})
def store_raw(context: dg.OpExecutionContext, work: StudyWork, ingestion: IngestionResource) -> StudyWork:
    """Write new files to the raw store at deterministic keys; identical objects are skipped."""
    runtime = ingestion.runtime()
    with bound_correlation_id(work.correlation_id):
        report = run_step(lambda: store_raw_step(runtime, work.extracted))
    if report.written:
        context.log_event(
            dg.AssetMaterialization(
                lineage.RAW_STORE,
                metadata={
                    "study_uid": work.extracted.study_instance_uid,
                    "objects_written": report.written,
                    "bytes_written": report.bytes_written,
                    "correlation_id": work.correlation_id,
                },
            )
        )
    context.log.info(
        f"stored {report.written} object(s), {report.unchanged} already identical, "
        f"{report.bytes_written} bytes (correlation_id={work.correlation_id})"
    )
    return work


@dg.op(retry_policy=TRANSIENT_RETRY, tags={"kind": "postgres"})
def persist_metadata(context: dg.OpExecutionContext, work: StudyWork, ingestion: IngestionResource) -> PersistedVersion:
    """One transaction: rows, a new study version if the content changed, and its outbox event."""
    runtime = ingestion.runtime()
    with bound_correlation_id(work.correlation_id):
        event_context = run_step(
            lambda: runtime.event_context(
                run_id=context.run_id, correlation_id=work.correlation_id, trigger=work.trigger
            )
        )
        outcome = run_step(lambda: persist_study_version(runtime, work.extracted, event_context))
    if outcome.status in ("created", "updated"):
        context.log_event(
            dg.AssetMaterialization(
                lineage.METADATA_TABLES,
                metadata={
                    "study_uid": outcome.study_instance_uid,
                    "version": outcome.version,
                    "status": outcome.status,
                    "instances": outcome.number_of_instances,
                    "added": outcome.added,
                    "correlation_id": work.correlation_id,
                },
            )
        )
    context.log.info(
        f"study {outcome.study_instance_uid} {outcome.status}: version {outcome.version}, "
        f"{outcome.added} added, {outcome.removed} removed (correlation_id={work.correlation_id})"
    )
    return PersistedVersion(outcome=outcome, correlation_id=work.correlation_id)


@dg.op(retry_policy=TRANSIENT_RETRY, tags={"kind": "kafka"})
def publish_event(
    context: dg.OpExecutionContext, persisted: PersistedVersion, ingestion: IngestionResource
) -> dg.Output[dict[str, object]]:
    """Send this study's pending outbox rows; mark them published after the broker's ack."""
    runtime = ingestion.runtime()
    outcome = persisted.outcome
    with bound_correlation_id(persisted.correlation_id):
        result = run_step(
            lambda: publish_pending_events(runtime.engine, runtime.producer, study_uid=outcome.study_instance_uid)
        )
    summary: dict[str, object] = {
        **outcome.as_dict(),
        "correlation_id": persisted.correlation_id,
        "events_published": result.published,
    }
    if result.published:
        context.log_event(
            dg.AssetMaterialization(
                lineage.EVENTS_TOPIC,
                metadata={
                    "study_uid": outcome.study_instance_uid,
                    "version": outcome.version,
                    "event_id": outcome.event_id or "",
                    "events_published": result.published,
                },
            )
        )
    request_succeeded(runtime, context.run.tags.get(tags.REQUEST_ID), outcome)
    context.log.info(f"published {result.published} event(s) for {outcome.study_instance_uid}")
    return dg.Output(summary, metadata={k: str(v) for k, v in summary.items()})
