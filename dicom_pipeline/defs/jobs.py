"""Jobs: one run per study, and the outbox relay."""

import dagster as dg

from dicom_pipeline.defs import tags
from dicom_pipeline.defs.ops import ingest_orthanc_study
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.domain.identifiers import new_correlation_id
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


def study_run_request(orthanc_id: str, *, trigger: str, run_key: str) -> dg.RunRequest:
    """A sensor's request for one study's run, with a correlation id of its own."""
    correlation_id = new_correlation_id()
    return dg.RunRequest(
        run_key=run_key,
        job_name=ingest_study.name,
        run_config=tags.study_run_config(orthanc_id, correlation_id, trigger),
        tags=tags.study_run_tags(orthanc_id, correlation_id, trigger),
    )


ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def run_in_progress(instance: dg.DagsterInstance, job_name: str) -> bool:
    """Whether a run of the job is queued or under way (sensors launch one at a time)."""
    return bool(instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=ACTIVE_RUN_STATUSES), limit=1))


@dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=5.0))
def relay_outbox(context: dg.OpExecutionContext, ingestion: IngestionResource) -> None:
    """Publish every pending outbox row, oldest first (Kafka was down, a worker died...)."""
    runtime = ingestion.runtime()
    result = publish_pending_events(runtime.engine, runtime.producer)
    context.log.info(f"outbox relay published {result.published} event(s)")


@dg.job(executor_def=dg.in_process_executor, description="Publish pending outbox events to Kafka.")
def outbox_relay() -> None:
    relay_outbox()
