"""Jobs: one run per study version, and the outbox relay."""

import dagster as dg

from dicom_pipeline.defs.hooks import dead_letter_on_failure
from dicom_pipeline.defs.ops import extract_study, persist_metadata, publish_event, store_raw
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.kafka.outbox import publish_pending_events


@dg.job(
    executor_def=dg.in_process_executor,
    hooks={dead_letter_on_failure},
    # A run retried after its worker crashed starts over: op outputs live in memory
    # (mem_io_manager), so "from failure" would have nothing to resume from. Starting over
    # is cheap, as files already stored are not downloaded again.
    tags={"dagster/retry_strategy": "ALL_STEPS"},
    description="Ingest one Orthanc study: extract -> store raw -> persist metadata -> publish event.",
)
def ingest_study() -> None:
    publish_event(persist_metadata(store_raw(extract_study())))


@dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=5.0))
def relay_outbox(context: dg.OpExecutionContext, ingestion: IngestionResource) -> None:
    """Publish every pending outbox row, oldest first (Kafka was down, a worker died...)."""
    runtime = ingestion.runtime()
    result = publish_pending_events(runtime.engine, runtime.producer)
    context.log.info(f"outbox relay published {result.published} event(s)")


@dg.job(executor_def=dg.in_process_executor, description="Publish pending outbox events to Kafka.")
def outbox_relay() -> None:
    relay_outbox()


outbox_relay_schedule = dg.ScheduleDefinition(
    job=outbox_relay,
    cron_schedule="* * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every minute: publish whatever the study runs could not.",
)
