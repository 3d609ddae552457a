"""The dead-run reaper: fails runs whose worker died, so their studies are not stranded.

See dicom_pipeline/run_liveness.py for why Dagster alone does not notice. For each dead
run, in this order: its scratch folder removed and its dead letter written (so a retry
that succeeds finds a letter to resolve), then the run marked failed (which frees its
study's concurrency slot and lets the instance's run_retries re-execute it).
"""

import json
import logging

import dagster as dg

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.run_heartbeats import forget, last_beats
from dicom_pipeline.defs.backstop import run_started_at, settle_failed_run
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.run_liveness import DeadRunDetector, StartedRun
from dicom_pipeline.runtime import Runtime

log = logging.getLogger(__name__)

# Every job of the code location: each holds the ingestion resource, so each beats.
MONITORED_JOBS = ("ingest_study", "outbox_relay", "reconcile", "backfill_by_study_date", "purge_dagster_runs")


def build_dead_run_reaper(*, heartbeat_seconds: float) -> dg.SensorDefinition:
    @dg.sensor(
        name="dead_run_reaper",
        # Longer than one heartbeat interval, so that a live worker beats between two looks.
        minimum_interval_seconds=max(5, round(heartbeat_seconds * 1.5)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Marks runs failed whose worker stopped sending heartbeats (killed, out of memory).",
    )
    def dead_run_reaper(context: dg.SensorEvaluationContext, ingestion: IngestionResource) -> dg.SkipReason:
        return reap_dead_runs(context, ingestion.runtime())

    return dead_run_reaper


def reap_dead_runs(context: dg.SensorEvaluationContext, runtime: Runtime) -> dg.SkipReason:
    detector = DeadRunDetector(runtime.settings.run_dead_after_seconds)
    monitored = set(MONITORED_JOBS)
    runs = {
        r.dagster_run.run_id: StartedRun(r.dagster_run.run_id, run_started_at(r))
        for r in context.instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        if r.dagster_run.job_name in monitored
    }
    with transaction(runtime.engine) as session:
        now, beats = last_beats(session, list(runs))
    silent = detector.silent(list(runs.values()), beats, now)
    dead, remember = detector.judge(silent, json.loads(context.cursor or "{}"))

    reaped = []
    for run_id in dead:
        run = context.instance.get_run_by_id(run_id)
        if run is None or run.status != dg.DagsterRunStatus.STARTED:
            continue  # it finished on its own meanwhile
        last = beats.get(run_id)
        message = (
            f"run worker stopped sending heartbeats (last {last.isoformat() if last else 'never'}, "
            f"limit {detector.dead_after_seconds:.0f}s): it was killed or its host was lost"
        )
        # Failed first, so Dagster has decided whether it retries the run.
        context.instance.report_run_failed(run, message)
        failed = context.instance.get_run_by_id(run_id) or run
        settle_failed_run(runtime, context.instance, failed, runs[run_id].started_at, "RunWorkerLost", message)
        reaped.append(run_id)
        log.warning(f"run {run_id} marked failed: {message}", extra={"run_id": run_id})
    with transaction(runtime.engine) as session:
        forget(session, reaped)
    context.update_cursor(json.dumps(remember))
    if reaped:
        return dg.SkipReason(f"marked {len(reaped)} run(s) with a dead worker failed: {', '.join(reaped)}")
    return dg.SkipReason(
        f"{len(runs)} started run(s), none dead" + (f"; {len(remember)} silent, looking again" if remember else "")
    )
