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
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from celery import Celery
from celery.apps.worker import install_worker_int_handler, install_worker_term_handler
from celery.exceptions import SecurityWarning
from celery.signals import (
    after_setup_logger,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)
from dagster import DagsterInstance
from dagster._cli.api import _execute_run_command_body
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import unpack_value
from dagster_celery.config import DEFAULT_CONFIG, TASK_EXECUTE_JOB_NAME
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_resume_job_task
from opentelemetry.trace import SpanKind

import dicom_pipeline.definitions  # noqa: F401 - warm import: the code location every run loads
from dicom_pipeline.defs import tags
from dicom_pipeline.logs import configure_logging, formatter_for
from dicom_pipeline.settings import Settings
from dicom_pipeline.staging_sweep import start_sweeping
from dicom_pipeline.tracing import configure_tracing, flush_spans, span, tracing_enabled

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
    register_execute_run_task(app)
    create_resume_job_task(app)
    return app


@lru_cache(maxsize=4)
def _instance_of_process(pid: int) -> DagsterInstance:
    """One Dagster instance per worker process (by pid: never one inherited through a fork).
    dagster-celery's own task builds and disposes one per run: reading and validating
    dagster.yaml and building the storages was 6 % of a worker's CPU in a burst of small
    studies (bench/RESULTS.md, 2026-12-02)."""
    return DagsterInstance.get()


def register_execute_run_task(app: Celery) -> None:
    """dagster-celery's `execute_job` task (the launcher sends it by that name), executing the
    run with the process's long-lived instance."""

    @app.task(bind=True, name=TASK_EXECUTE_JOB_NAME, track_started=True)
    def execute_job(_task: Any, execute_job_args_packed: Any) -> int:
        args = unpack_value(execute_job_args_packed, as_type=ExecuteRunArgs)
        instance = _instance_of_process(os.getpid())
        exit_on_failure = True if args.set_exit_code_on_failure is None else args.set_exit_code_on_failure
        with _run_span(instance, args.run_id):
            return _execute_run_command_body(
                instance=instance,
                run_id=args.run_id,
                write_stream_fn=lambda _event: None,
                set_exit_code_on_failure=exit_on_failure,
            )


@contextmanager
def _run_span(instance: DagsterInstance, run_id: str) -> Iterator[None]:
    """The run as a span of its study's trace (the run's traceparent tag); its ops are
    spans within it (defs/ops.py). Nothing is read when tracing is off."""
    if not tracing_enabled():
        yield
        return
    run = instance.get_run_by_id(run_id)
    parent = run.tags.get(tags.TRACEPARENT) if run is not None else None
    job = run.job_name if run is not None else "run"
    attributes = {"dagster.run_id": run_id, "dagster.job": job}
    with span(f"run {job}", parent=parent, kind=SpanKind.CONSUMER, attributes=attributes):
        yield


def worker_argv(*, concurrency: int, queues: list[str], hostname: str | None, loglevel: str) -> list[str]:
    name = hostname or f"dicom-pipeline@{socket.gethostname()}"
    # --quiet: no banner (text in no log format); what it said is the "ready" line's fields.
    return ["--quiet", "worker", "-Q", ",".join(queues), "-c", str(concurrency), "-n", name, "--loglevel", loglevel]


def require_dagster_home() -> str:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise RuntimeError("DAGSTER_HOME must point at the Dagster instance the runs belong to")
    return home


@after_setup_logger.connect
def _one_format_for_celery(logger: logging.Logger, *args: object, **kwargs: object) -> None:
    """Celery's own lines (worker ready, worker lost) in the format of every process."""
    for handler in logger.handlers:
        handler.setFormatter(formatter_for(_settings.log_format, sys.stderr))
    # Celery sets the root logger to its --loglevel: libraries without a level of their own
    # (urllib3, alembic) would log every connection and migration check again.
    # Celery's own loggers keep its level ("ready.", a lost worker).
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("celery").setLevel(_settings.log_level.upper())
    # Two lines a run with the whole task message: the run's own lines say more.
    for name in ("celery.worker.strategy", "celery.app.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)


@worker_process_init.connect
def _trace_this_process(**_kwargs: object) -> None:
    """Each pool process exports its own spans (a batch's thread does not survive a fork)."""
    configure_tracing("dicom-pipeline-worker")


@worker_process_shutdown.connect
def _export_last_spans(**_kwargs: object) -> None:
    flush_spans()


@worker_ready.connect
def _sweep_dead_runs_staging(**_kwargs: object) -> None:
    """In the worker's main process (it outlives its pool processes): the scratch folders
    of runs killed on this host, which nothing else can reach (dicom_pipeline.staging_sweep)."""
    start_sweeping(_settings)


@worker_ready.connect
def _shutdown_in_the_log(sender: Any = None, **_kwargs: object) -> None:
    """Celery's SIGTERM and SIGINT handlers write "worker: Warm shutdown (MainProcess)" straight
    to stdout, in no log format (the last line `make dev` showed raw). The same handlers,
    without that print, replace them; _log_shutdown says it as a log line. Installed once
    Celery has installed its own (worker_ready comes after its platform tweaks)."""
    worker = sender.controller
    install_worker_term_handler(worker, verbose=False)
    install_worker_int_handler(worker, verbose=False)


@worker_shutting_down.connect
def _log_shutdown(sig: str = "", how: str = "", **_kwargs: object) -> None:
    logging.getLogger(__name__).info("%s shutdown on %s", how.lower(), sig)


# Celery warns on every start as root: a worker that accepted pickle would run whatever a
# message held with root's rights. This one accepts JSON only (Celery's default, never
# changed here), and compose runs it as the unprivileged user `dicom` (Dockerfile); as root
# it runs only where its user is root (`make dev` in a root shell: README, "Development").
warnings.filterwarnings(
    "ignore", message=r"You're running the worker with superuser privileges", category=SecurityWarning
)

_settings = Settings()
configure_logging(_settings.log_level, _settings.log_format, process="worker")
app = build_app(_settings)
