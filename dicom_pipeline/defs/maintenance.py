"""Housekeeping: the outbox relay when (and only when) events wait, and the purge of old runs."""

import datetime as dt

import dagster as dg

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.outbox_state import pending_events
from dicom_pipeline.defs.jobs import outbox_relay, run_in_progress
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.defs.run_log import RUN_LOGGERS
from dicom_pipeline.defs.step_outputs import purge_step_outputs

# A study run publishes its own events right after committing them; only rows older than
# this are the relay's (Kafka was down, a worker died between commit and publish).
RELAY_AFTER_SECONDS = 20.0


@dg.sensor(
    job=outbox_relay,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches the outbox relay when events have waited in the outbox; idle otherwise.",
)
def outbox_relay_sensor(
    context: dg.SensorEvaluationContext, ingestion: IngestionResource
) -> dg.RunRequest | dg.SkipReason:
    with transaction(ingestion.runtime().engine) as session:
        pending = pending_events(session)
    if pending.count == 0 or pending.oldest_age_seconds is None:
        return dg.SkipReason("the outbox is empty")
    if pending.oldest_age_seconds < RELAY_AFTER_SECONDS:
        return dg.SkipReason(f"{pending.count} event(s) pending, all recent: their study runs are publishing them")
    if run_in_progress(context.instance, outbox_relay.name):
        return dg.SkipReason(f"{pending.count} event(s) pending; a relay run is already under way")
    return dg.RunRequest(tags={"dicom/pending_events": str(pending.count)})


class PurgeRunsConfig(dg.Config):
    keep_days: int = 30
    keep_failed_days: int = 90


def purge_old_runs(
    instance: dg.DagsterInstance, now: dt.datetime, keep_days: int, keep_failed_days: int, limit: int = 1000
) -> dict[str, int]:
    """Delete finished runs (and their event logs) last updated before their cutoff.

    Failed runs are kept longer: they are what someone may still be investigating.
    """
    deleted = {"succeeded_or_canceled": 0, "failed": 0}
    plans = (
        ("succeeded_or_canceled", [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.CANCELED], keep_days),
        ("failed", [dg.DagsterRunStatus.FAILURE], keep_failed_days),
    )
    for name, statuses, days in plans:
        cutoff = now - dt.timedelta(days=days)
        while True:
            records = instance.get_run_records(
                dg.RunsFilter(statuses=statuses, updated_before=cutoff), limit=min(limit, 200)
            )
            if not records:
                break
            for record in records:
                instance.delete_run(record.dagster_run.run_id)
            deleted[name] += len(records)
            if deleted[name] >= limit:
                break
    return deleted


@dg.op
def purge_runs(
    context: dg.OpExecutionContext, config: PurgeRunsConfig, ingestion: IngestionResource
) -> dg.Output[dict[str, int]]:
    """(The ingestion resource makes this run beat like every other, for the reaper.)"""
    now = dt.datetime.now(dt.UTC)
    deleted = purge_old_runs(context.instance, now, config.keep_days, config.keep_failed_days)
    # What failed study runs kept for a re-execution goes with those runs.
    deleted["step_outputs"] = purge_step_outputs(
        ingestion.runtime().engine, now - dt.timedelta(days=config.keep_failed_days)
    )
    context.log.info(f"purged runs: {deleted}")
    return dg.Output(deleted, metadata=deleted)


@dg.job(
    executor_def=dg.in_process_executor,
    config=RUN_LOGGERS,
    description="Delete old finished runs and their event logs.",
)
def purge_dagster_runs() -> None:
    purge_runs()


def build_purge_schedule(*, keep_days: int, keep_failed_days: int) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="purge_dagster_runs_schedule",
        job=purge_dagster_runs,
        cron_schedule="17 3 * * *",
        run_config={"ops": {"purge_runs": {"config": {"keep_days": keep_days, "keep_failed_days": keep_failed_days}}}},
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Daily: delete finished runs older than {keep_days} days (failed: {keep_failed_days}).",
    )
