"""The runs' console logger: a run's Dagster events in the process's own log format.

Dagster's default console logger writes every run's events to stdout in its own coloured
format, where a Celery worker turns them into "celery.redirected" lines (three formats in
one line), and writes again every line of the project's loggers that `python_logs` captured
into the run's log, which the process's root handler has already written. This logger is
a child of the root handler (dicom_pipeline.logs): each event once, in the one format, with
its run, step and event type as fields; captured lines are left to the root handler.

Dagster uses a job's loggers only when the run's config names them: a run whose config has
no `loggers` key gets Dagster's default console logger whatever the job defines
(dagster/_core/execution/context_creation_job.py, create_log_manager). So every run config
the pipeline writes names this one (RUN_LOGGERS, through `with_run_logger`), and jobs whose
config is all optional carry it as their default config, which Dagster merges into any run
config launched without it (the UI's launchpad, a backfill, a schedule).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import dagster as dg

from dicom_pipeline.logs import CAPTURED_FROM

RUN_LOGGER_KEY = "console"
# The run config that selects the runs' console logger (its own config is all defaults).
RUN_LOGGERS: dict[str, Any] = {"loggers": {RUN_LOGGER_KEY: {}}}


def with_run_logger(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """`run_config` with the runs' console logger selected (see the module docstring)."""
    return {**run_config, **RUN_LOGGERS}


class _RunLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, CAPTURED_FROM, None):
            return False  # a project logger's line: the root handler wrote it already
        meta = getattr(record, "dagster_meta", None)
        if isinstance(meta, dict):
            record.run_id = meta.get("run_id")
            if meta.get("step_key"):
                record.step = meta["step_key"]
            event = meta.get("dagster_event")
            if event is not None:
                record.event = event.event_type_value
        return True


@dg.logger(
    config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
    description="Run events in the process's log format (DICOM_PIPELINE_LOG_FORMAT), each once.",
)
def run_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.getLogger("dagster.run")
    logger.setLevel(str(init_context.logger_config["log_level"]).upper())
    if not any(isinstance(f, _RunLines) for f in logger.filters):
        logger.addFilter(_RunLines())
    return logger
