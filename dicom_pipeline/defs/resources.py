"""Dagster resources: thin handles on the process's composition root."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from dicom_pipeline.defs import tags
from dicom_pipeline.run_liveness import Heartbeat
from dicom_pipeline.runtime import Runtime, get_runtime


class IngestionResource(dg.ConfigurableResource):
    """Orthanc, PostgreSQL, the raw store and Kafka, configured by the settings object.

    While a run holds it, the run beats (so a killed worker is noticed, see
    run_liveness) and owns a scratch folder that is removed when the run ends.
    """

    def runtime(self) -> Runtime:
        return get_runtime()

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[IngestionResource]:
        run = context.run
        if run is None:  # built outside a run (tests, sensors): nothing to keep alive
            yield self
            return
        runtime = get_runtime()
        # Which worker executes the run, in the UI's run tags (several hosts share the queue).
        if context.instance is not None:
            context.instance.add_run_tags(run.run_id, {tags.WORKER: f"{socket.gethostname()}:{os.getpid()}"})
        heartbeat = Heartbeat(
            lambda: runtime.engine,
            run_id=run.run_id,
            job_name=run.job_name,
            interval=runtime.settings.run_heartbeat_seconds,
        )
        with heartbeat:
            try:
                yield self
            finally:
                shutil.rmtree(runtime.run_staging(run.run_id), ignore_errors=True)
