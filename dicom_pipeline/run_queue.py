"""The run launcher: dagster-celery's, which waits for an unreachable run queue.

dagster-celery's CeleryRunLauncher sends each run to Redis once (Celery's own publish
retries last well under a second); when Redis is down, the launch raises and Dagster marks
the run failed. The instance's run retry then spends its one attempt on the same outage a
second later, and the study gets a dead letter for nothing but a broker blip (seen in a
soak: both attempts failed within 2 s of each other). A queue that is unreachable is not a
failed run: this launcher tries again with backoff for up to `queue_wait_seconds` (kept
below `run_monitoring.start_timeout_seconds`, which fails runs stuck in STARTING), and
only then lets the launch fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dagster._check as check
import kombu.exceptions
import redis.exceptions
from dagster import Field, IntSource
from dagster._core.launcher import LaunchRunContext, ResumeRunContext
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import pack_value
from dagster_celery.config import TASK_EXECUTE_JOB_NAME, TASK_RESUME_JOB_NAME
from dagster_celery.launcher import CeleryRunLauncher

# What Celery raises when it cannot publish to the broker.
QUEUE_UNREACHABLE: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)
DEFAULT_QUEUE_WAIT_SECONDS = 120


def backoff(first: float = 1.0, cap: float = 15.0) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)


class QueueWaitingCeleryRunLauncher(CeleryRunLauncher):
    """`run_launcher: {module: dicom_pipeline.run_queue, class: QueueWaitingCeleryRunLauncher}`:
    CeleryRunLauncher's config, plus `queue_wait_seconds`."""

    def __init__(self, *args: Any, queue_wait_seconds: int = DEFAULT_QUEUE_WAIT_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_wait_seconds = queue_wait_seconds

    @classmethod
    def config_type(cls) -> Any:
        schema = dict(check.is_dict(super().config_type()))
        schema["queue_wait_seconds"] = Field(
            IntSource,
            is_required=False,
            default_value=DEFAULT_QUEUE_WAIT_SECONDS,
            description="How long a launch waits for an unreachable run queue before the run fails.",
        )
        return schema

    def launch_run(self, context: LaunchRunContext) -> None:
        self._send(context.dagster_run, ExecuteRunArgs, TASK_EXECUTE_JOB_NAME)

    def resume_run(self, context: ResumeRunContext) -> None:
        self._send(context.dagster_run, ResumeRunArgs, TASK_RESUME_JOB_NAME)

    def _send(self, run: DagsterRun, args_type: type[ExecuteRunArgs | ResumeRunArgs], task_name: str) -> None:
        """dagster-celery's launch, the task named rather than defined: its launcher defines
        the task on its Celery app again for every run (a DuplicateTaskNameWarning each
        time); only the worker executes it, and a signature by name is all sending needs."""
        args = args_type(
            job_origin=check.not_none(run.job_code_origin),
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=True,
        )
        signature = self.celery.signature(
            task_name, kwargs={"execute_job_args_packed": pack_value(args)}, immutable=True
        )
        self._launch_celery_task_run(run=run, task_signature=signature, routing_key=task_name)

    def _launch_celery_task_run(self, run: DagsterRun, task_signature: Any, routing_key: str) -> None:
        deadline = time.monotonic() + self.queue_wait_seconds
        delays = backoff()
        while True:
            try:
                super()._launch_celery_task_run(run, task_signature, routing_key)
                return
            except QUEUE_UNREACHABLE as exc:
                delay = next(delays)
                if time.monotonic() + delay > deadline:
                    raise
                self._instance.report_engine_event(
                    f"Run queue unreachable ({type(exc).__name__}: {str(exc)[:200]}); trying again in {delay:.0f} s",
                    run,
                    cls=self.__class__,
                )
                time.sleep(delay)
