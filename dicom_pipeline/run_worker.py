"""The Celery app of the run workers: `dicom-pipeline worker` (or `celery -A dicom_pipeline.run_worker`).

Dagster's CeleryRunLauncher (dagster_home/dagster.yaml) puts each run on a Redis queue; a
worker process takes it and executes it with `_execute_run_command_body`, as `dagster api
execute_run` would in a fresh process, but in a process that already imported Dagster and
this code location. Importing them here, before Celery forks its pool, is what makes every
pool process warm from its first run.
"""

from __future__ import annotations

import logging
import os
import socket

import dagster._cli.api  # noqa: F401 - warm import: what every run executes
from celery import Celery
from celery.signals import after_setup_logger
from dagster_celery.config import DEFAULT_CONFIG
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task

import dicom_pipeline.definitions  # noqa: F401 - warm import: the code location every run loads
from dicom_pipeline.logs import JsonFormatter, configure_logging
from dicom_pipeline.settings import Settings

LIVE_QUEUE = "dagster"
# Backfill partition runs go to their own queue, so a long backfill never holds the workers
# that live studies need (see README "Scaling out").
BACKFILL_QUEUE = "backfill"


def build_app(settings: Settings) -> Celery:
    broker = settings.celery_broker_url.get_secret_value()
    app = make_app(
        app_args={
            "broker": broker,
            "backend": broker,
            "include": [],
            "config_source": {
                **DEFAULT_CONFIG,
                "worker_prefetch_multiplier": 1,
                "broker_connection_retry_on_startup": True,
                "result_expires": 86400,
                # The project's loggers are set up by dicom_pipeline.logs (JSON, correlation id).
                "worker_hijack_root_logger": False,
                # Dagster's console lines of a run arrive as the task's stdout: they are INFO.
                "worker_redirect_stdouts_level": "INFO",
            },
            "task_default_queue": LIVE_QUEUE,
        }
    )
    create_execute_job_task(app)
    create_resume_job_task(app)
    return app


def worker_argv(*, concurrency: int, queues: list[str], hostname: str | None, loglevel: str) -> list[str]:
    name = hostname or f"dicom-pipeline@{socket.gethostname()}"
    return ["worker", "-Q", ",".join(queues), "-c", str(concurrency), "-n", name, "--loglevel", loglevel]


def require_dagster_home() -> str:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise RuntimeError("DAGSTER_HOME must point at the Dagster instance the runs belong to")
    return home


@after_setup_logger.connect
def _json_worker_logs(logger: logging.Logger, *args: object, **kwargs: object) -> None:
    """Celery's own lines (task received, succeeded, worker lost) as JSON, like every process."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())


_settings = Settings()
configure_logging(_settings.log_level)
app = build_app(_settings)
