"""The Dagster code location: `dagster-webserver -w workspace.yaml` loads `defs` from here.

The definitions are built by a function, when Dagster loads the location, from the
settings of that moment; nothing is read when this module is imported.
"""

from __future__ import annotations

import warnings

import dagster as dg

from dicom_pipeline.defs.backfill import build_backfill_job
from dicom_pipeline.defs.backstop import dead_letter_backstop
from dicom_pipeline.defs.change_feed import build_change_feed_sensor
from dicom_pipeline.defs.jobs import ingest_study, outbox_relay
from dicom_pipeline.defs.lineage import LINEAGE_SPECS
from dicom_pipeline.defs.maintenance import build_purge_schedule, outbox_relay_sensor, purge_dagster_runs
from dicom_pipeline.defs.reaper import build_dead_run_reaper
from dicom_pipeline.defs.reconcile import build_nightly_full_reconcile, build_reconcile_sensor, reconcile
from dicom_pipeline.defs.resources import resources_from_settings
from dicom_pipeline.defs.run_log import RUN_LOGGER_KEY, run_console_logger
from dicom_pipeline.logs import configure_logging
from dicom_pipeline.settings import Settings
from dicom_pipeline.tracing import configure_tracing

# Dagster 1.13 copies a sensor (SensorDefinition.with_attributes, when it binds jobs and
# resources) passing `owners=[]` itself, which its beta check reports as if we had used the
# beta parameter; no sensor here has owners. Only that message is silenced.
warnings.filterwarnings(
    "ignore", message=r"Parameter `owners` of initializer `SensorDefinition\.__init__`", category=dg.BetaWarning
)


def build_definitions(settings: Settings, *, resources_from_env: bool = True) -> dg.Definitions:
    # Sensors and runs log with the correlation id, in whatever process loads the location
    # (code server, daemon, worker); python_logs also puts them in the UI.
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing("dicom-pipeline-dagster")
    return dg.Definitions(
        assets=LINEAGE_SPECS,
        jobs=[
            ingest_study,
            outbox_relay,
            reconcile,
            build_backfill_job(start_date=settings.backfill_start_date),
            purge_dagster_runs,
        ],
        schedules=[
            build_purge_schedule(
                keep_days=settings.run_retention_days, keep_failed_days=settings.failed_run_retention_days
            ),
            build_nightly_full_reconcile(running=settings.reconcile_schedule),
        ],
        sensors=[
            build_change_feed_sensor(running=settings.change_feed_sensor),
            outbox_relay_sensor,
            build_reconcile_sensor(running=settings.reconcile_schedule),
            dead_letter_backstop,
            build_dead_run_reaper(heartbeat_seconds=settings.run_heartbeat_seconds),
        ],
        resources=resources_from_settings(settings, from_env=resources_from_env),
        # Every job's console logger: the process's one format, each line once (defs/run_log.py).
        loggers={RUN_LOGGER_KEY: run_console_logger},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings())
