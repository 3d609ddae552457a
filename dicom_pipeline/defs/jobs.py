"""Jobs: one run per study (four ops and a failure hook), and the outbox relay."""

from collections.abc import Mapping

import dagster as dg

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.repository import study_uid_of_orthanc_id
from dicom_pipeline.defs import tags
from dicom_pipeline.defs.hooks import dead_letter_on_failure
from dicom_pipeline.defs.ops import extract_study, persist_metadata, publish_events, store_raw
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.defs.run_log import RUN_LOGGERS
from dicom_pipeline.domain.identifiers import new_correlation_id
from dicom_pipeline.kafka.outbox import publish_pending_events
from dicom_pipeline.orthanc.client import StudyState
from dicom_pipeline.runtime import Runtime
from dicom_pipeline.tracing import new_trace_traceparent


@dg.job(
    executor_def=dg.in_process_executor,
    hooks={dead_letter_on_failure},
    # A run retried after its worker crashed starts over: the files it staged were on that
    # worker. Starting over is cheap, as stored files are not downloaded again.
    tags={"dagster/retry_strategy": "ALL_STEPS"},
    description="Ingest one Orthanc study: extract -> store raw -> persist metadata -> publish events.",
)
def ingest_study() -> None:
    extraction = extract_study()
    publish_events(persist_metadata(extraction, stored=store_raw(extraction)))


def study_run_request(state: StudyState, *, trigger: str, run_key: str) -> dg.RunRequest:
    """A sensor's request for one study's run, keyed by its Study Instance UID (the run key
    starts with it; the run's tags carry it from creation, for the per-study limit)."""
    correlation_id = new_correlation_id()
    run_tags = tags.study_run_tags(state.orthanc_id, correlation_id, trigger, state.study_uid)
    # A sensor's run starts a trace of its own (dicom_pipeline/tracing.py; None when off).
    traceparent = new_trace_traceparent(
        f"{trigger}: request ingest_study", {"dicom.orthanc_id": state.orthanc_id, "dicom.trigger": trigger}
    )
    if traceparent:
        run_tags[tags.TRACEPARENT] = traceparent
    return dg.RunRequest(
        run_key=f"{state.study_uid or state.orthanc_id}:{run_key}",
        job_name=ingest_study.name,
        run_config=tags.study_run_config(state.orthanc_id, correlation_id, trigger),
        tags=run_tags,
    )


def states_for_runs(runtime: Runtime, states: Mapping[str, StudyState | None]) -> dict[str, StudyState]:
    """Each study's state for its run request; a study Orthanc no longer holds (its run
    records the deletion) is keyed by the Study Instance UID the database holds for it."""
    result = {oid: state for oid, state in states.items() if state is not None}
    gone = [oid for oid, state in states.items() if state is None]
    if gone:
        with transaction(runtime.engine) as session:
            for oid in gone:
                result[oid] = StudyState(oid, study_uid_of_orthanc_id(session, oid), None)
    return result


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


@dg.job(executor_def=dg.in_process_executor, config=RUN_LOGGERS, description="Publish pending outbox events to Kafka.")
def outbox_relay() -> None:
    relay_outbox()
