"""Reconciliation: the backstop for everything the webhook and the change feed can lose.

The periodic pass (`reconcile_sensor`) looks at what changed since the last one and gives
each study it finds its own ingest_study run. A full scan (`reconcile` job: on demand, the
first pass, or when the change log cannot be trusted; ingestion/reconcile.py) is bulk work
like a backfill: it ingests what it finds within its own run, a few studies at a time.
"""

import dagster as dg
from pydantic import Field

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.defs.batch import ingest_in_this_run
from dicom_pipeline.defs.jobs import ingest_study, run_in_progress, states_for_runs, study_run_request
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.defs.run_log import RUN_LOGGERS
from dicom_pipeline.ingestion.reconcile import FullScanNeeded, plan_reconciliation
from dicom_pipeline.ingestion.requests import studies_covered_by_requests


class ReconcileConfig(dg.Config):
    full: bool = Field(default=False, description="Scan every study in Orthanc, not only what changed.")


@dg.op(tags={"kind": "orthanc"})
def reconcile_orthanc(
    context: dg.OpExecutionContext, config: ReconcileConfig, ingestion: IngestionResource
) -> dg.Output[dict[str, int]]:
    runtime = ingestion.runtime()
    look = plan_reconciliation(runtime, full=config.full)
    stale = look.stale
    context.log.info(
        f"reconciliation ({look.why}): {look.changes_read} change(s) read, {look.studies_checked} "
        f"study(ies) checked, {len(stale)} to ingest"
    )
    report = ingest_in_this_run(
        context,
        runtime,
        [s.orthanc_id for s in stale],
        trigger="reconcile",
        concurrency=runtime.settings.download_concurrency,
    )
    counts = {"checked": look.studies_checked, "found": len(stale), **report.as_dict()}
    return dg.Output(counts, metadata={**counts, "mode": look.mode})


@dg.job(
    executor_def=dg.in_process_executor,
    config=RUN_LOGGERS,
    description="Ingest Orthanc studies missing from or stale in the DB.",
)
def reconcile() -> None:
    reconcile_orthanc()


def full_reconcile_request(run_key: str, reason: str) -> dg.RunRequest:
    """A full scan, when the change log cannot say what changed."""
    return dg.RunRequest(
        run_key=run_key,
        job_name=reconcile.name,
        run_config={"ops": {"reconcile_orthanc": {"config": {"full": True}}}},
        tags={"dicom/reconcile_reason": reason[:200]},
    )


def build_reconcile_sensor(*, running: bool) -> dg.SensorDefinition:
    """Every minute, what changed in Orthanc since the last pass and is not ingested:
    one ingest_study run per study (each watched and re-run alone in the UI). A full scan
    is a `reconcile` run of its own (bulk, like a backfill): on the first pass, after a
    feed reset, or launched by hand with `full: true`."""

    @dg.sensor(
        name="reconcile_sensor",
        jobs=[ingest_study, reconcile],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description="Every minute: one ingest_study run per study the webhook and the change feed missed.",
    )
    def reconcile_sensor(
        context: dg.SensorEvaluationContext, ingestion: IngestionResource
    ) -> dg.SensorResult | dg.SkipReason:
        if context.cursor is None:
            # A first start: the change feed (every 5 s, from the start of Orthanc's change
            # log) gives each study it names its own run. A full scan now would ingest the
            # same studies in bulk a moment earlier and leave those runs finding them
            # unchanged; a minute later it finds only what the feed could not name.
            return dg.SensorResult(
                skip_reason=dg.SkipReason("first pass: the change feed goes first; the next pass reconciles"),
                cursor="0",
            )
        runtime = ingestion.runtime()
        try:
            look = plan_reconciliation(runtime, allow_full=False)
        except FullScanNeeded as why:
            if run_in_progress(context.instance, reconcile.name):
                return dg.SkipReason(f"{why}: a full reconciliation run is already under way")
            return dg.SensorResult(
                run_requests=[full_reconcile_request(f"reconcile-full:{context.cursor}", str(why))],
                cursor=str(int(context.cursor) + 1),
            )
        with transaction(runtime.engine) as session:
            covered = studies_covered_by_requests(
                session, {s.orthanc_id: look.last_updates.get(s.orthanc_id) for s in look.stale}
            )
        wanted = [study for study in look.stale if study.orthanc_id not in covered]
        states = states_for_runs(runtime, {study.orthanc_id: look.states.get(study.orthanc_id) for study in wanted})
        requests = []
        for study in wanted:
            run_key = study.run_key(look.last_updates.get(study.orthanc_id))
            requests.append(study_run_request(states[study.orthanc_id], trigger="reconcile", run_key=run_key))
        if not requests:
            return dg.SkipReason(
                f"{look.why}: {look.changes_read} change(s), {look.studies_checked} study(ies) checked, none to ingest"
            )
        return dg.SensorResult(run_requests=requests)

    return reconcile_sensor


def build_nightly_full_reconcile(*, running: bool) -> dg.ScheduleDefinition:
    """The net under the deletion callbacks: Orthanc's change log keeps no trace of a
    deletion, so only a full scan finds one whose callback was lost."""
    return dg.ScheduleDefinition(
        name="nightly_full_reconcile",
        job=reconcile,
        cron_schedule="41 2 * * *",
        run_config={"ops": {"reconcile_orthanc": {"config": {"full": True}}}},
        tags={"dicom/reconcile_reason": "nightly"},
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description="Daily: a full reconciliation, which also finds studies, series and instances deleted in Orthanc.",
    )
