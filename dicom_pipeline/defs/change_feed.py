"""The change-feed sensor: one ingest_study run per StableStudy change in Orthanc."""

import logging

import dagster as dg

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.defs.jobs import ingest_study, states_for_runs, study_run_request
from dicom_pipeline.defs.reconcile import full_reconcile_request, reconcile
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.errors import OrthancUnavailable
from dicom_pipeline.ingestion.change_feed import FeedCursor, read_feed
from dicom_pipeline.ingestion.requests import studies_covered_by_requests
from dicom_pipeline.runtime import Runtime

PAGE_SIZE = 1000
MAX_PAGES_PER_TICK = 10
# Every stable study gets its own run (watched and re-run alone in the UI). Submitting a
# run costs a tick ~0.1-0.2 s, so a burst is spread over ticks of at most this many runs,
# well inside the 60 s tick timeout.
MAX_RUNS_PER_TICK = 100

log = logging.getLogger(__name__)


class ChangeFeedUnavailable(Exception):
    """The tick fails (visibly) and the cursor stays where it was."""


def build_change_feed_sensor(*, running: bool) -> dg.SensorDefinition:
    """`running`: the sensor's state on a fresh Dagster instance (the UI can change it)."""

    @dg.sensor(
        name="orthanc_change_feed",
        jobs=[ingest_study, reconcile],
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description="Follows Orthanc /changes and requests an ingest_study run for each StableStudy.",
    )
    def orthanc_change_feed(
        context: dg.SensorEvaluationContext, ingestion: IngestionResource
    ) -> dg.SensorResult | dg.SkipReason:
        return evaluate_change_feed(context, ingestion.runtime())

    return orthanc_change_feed


def evaluate_change_feed(context: dg.SensorEvaluationContext, runtime: Runtime) -> dg.SensorResult:
    cursor = FeedCursor.parse(context.cursor)
    try:
        with runtime.orthanc() as orthanc:
            plan = read_feed(orthanc, cursor, PAGE_SIZE, MAX_PAGES_PER_TICK, MAX_RUNS_PER_TICK)
            states = {orthanc_id: orthanc.study_state(orthanc_id) for orthanc_id in plan.stable_studies}
    except OrthancUnavailable as exc:
        raise ChangeFeedUnavailable(f"Orthanc is unavailable ({exc}); the cursor stays at {cursor.seq}") from exc
    # Orthanc's Lua call usually reached the webhook first: that request's run covers the
    # same Orthanc state, so a second run would only find the study unchanged.
    with transaction(runtime.engine) as session:
        covered = studies_covered_by_requests(
            session, {oid: state.last_update if state else None for oid, state in states.items()}
        )
    if covered:
        # The project's logger, not context.log: Dagster writes a sensor's context.log to the
        # console in its own format whatever the process's (dicom_pipeline/logs.py).
        log.debug(f"{len(covered)} stable study(ies) already announced through the webhook")

    run_states = states_for_runs(runtime, {oid: s for oid, s in states.items() if oid not in covered})
    run_requests = []
    for orthanc_id, seq in sorted(plan.stable_studies.items(), key=lambda item: item[1]):
        if orthanc_id in covered:
            continue
        # The sequence is part of the key: a later StableStudy of the same study (new
        # instances) is a new run; versioning makes a repeat harmless.
        run_requests.append(study_run_request(run_states[orthanc_id], trigger="sensor", run_key=f"{orthanc_id}:{seq}"))
    if plan.reconcile_reason is not None:
        log.warning(f"change feed cannot be trusted ({plan.reconcile_reason}); running reconciliation")
        run_requests.append(full_reconcile_request(f"reconcile:{cursor.seq}:{plan.next_seq}", plan.reconcile_reason))
    next_cursor = FeedCursor(seq=plan.next_seq).dump()
    if not run_requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"no stable study needing a run in {plan.changes_read} change(s) after seq {cursor.seq}"
                + (f" ({len(covered)} covered by webhook requests)" if covered else "")
            ),
            cursor=next_cursor,
        )
    return dg.SensorResult(run_requests=run_requests, cursor=next_cursor)
