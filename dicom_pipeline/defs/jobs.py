"""Jobs: one run per study, and the outbox relay."""

import dagster as dg

from dicom_pipeline.defs.ops import ingest_orthanc_study
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.kafka.outbox import publish_pending_events


@dg.job(
    executor_def=dg.in_process_executor,
    # A run retried after its worker crashed starts over: op outputs live in memory
    # (mem_io_manager). Starting over is cheap, as stored files are not downloaded again.
    tags={"dagster/retry_strategy": "ALL_STEPS"},
    description="Ingest one Orthanc study: extract -> store raw -> persist metadata -> publish event.",
)
def ingest_study() -> None:
    ingest_orthanc_study()


@dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=5.0))
def relay_outbox(context: dg.OpExecutionContext, ingestion: IngestionResource) -> None:
    """Publish every pending outbox row, oldest first (Kafka was down, a worker died...)."""
    runtime = ingestion.runtime()
    result = publish_pending_events(runtime.engine, runtime.producer)
    context.log.info(f"outbox relay published {result.published} event(s)")


@dg.job(executor_def=dg.in_process_executor, description="Publish pending outbox events to Kafka.")
def outbox_relay() -> None:
    relay_outbox()
