"""Turns accepted requests into ingest_study runs through Dagster's GraphQL API.

Requests are durable in PostgreSQL before the webhook answers. A background loop in the
service claims requests that have no run yet (SKIP LOCKED, so replicas never race) and
submits them; when Dagster is down they simply wait for the next attempt. A request is
woken at once after it is accepted, so the usual latency is one GraphQL call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from dagster_graphql import DagsterGraphQLClient

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.ingestion_requests import claim_unlaunched
from dicom_pipeline.db.repository import study_uid_of_orthanc_id
from dicom_pipeline.defs import tags
from dicom_pipeline.errors import PipelineError
from dicom_pipeline.ingestion.requests import (
    DELETED,
    decide_launch,
    mark_already_ingested,
    mark_duplicate,
    mark_launch_failed,
    mark_launched,
)
from dicom_pipeline.logs import bound_correlation_id
from dicom_pipeline.orthanc.client import OrthancClient
from dicom_pipeline.runtime import Runtime

log = logging.getLogger("webhook.launcher")

JOB_NAME = "ingest_study"


class RunLauncher:
    def __init__(self, runtime: Runtime, poll_seconds: float = 2.0) -> None:
        self.runtime = runtime
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def client(self) -> DagsterGraphQLClient:
        url = self.runtime.settings.dagster_url.rstrip("/")
        host, _, port = url.removeprefix("http://").removeprefix("https://").partition(":")
        return DagsterGraphQLClient(
            host, port_number=int(port) if port else None, use_https=url.startswith("https://"), timeout=10
        )

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="run-launcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.launch_pending)
            except Exception:
                log.exception("launch attempt failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            self._wake.clear()

    def launch_pending(self, batch: int = 20) -> int:
        """Submit runs for requests that need one; returns how many runs were launched.

        Requests announcing an Orthanc state that another request already covers share
        its run, and a state already ingested needs none (ingestion/requests.py).
        """
        launched = 0
        with transaction(self.runtime.engine) as session, self.runtime.orthanc() as orthanc:
            requests = claim_unlaunched(session, batch)
            if not requests:
                return 0
            client = self.client()
            for request in requests:
                with bound_correlation_id(request.correlation_id):
                    last_update, study_uid = _launch_state(orthanc, request.orthanc_id)
                    if study_uid is None:
                        # Deleted in Orthanc (or Orthanc is down): the database may know the study.
                        study_uid = study_uid_of_orthanc_id(session, request.orthanc_id)
                    decision = decide_launch(session, request, last_update)
                    if decision.action == "duplicate" and decision.original is not None:
                        mark_duplicate(request, decision.original)
                        log.info(
                            "request served by an earlier request's run",
                            extra={"request_id": str(request.id), "run_id": request.run_id},
                        )
                        continue
                    if decision.action in ("already_ingested", "already_deleted"):
                        outcome = "unchanged" if decision.action == "already_ingested" else "deleted"
                        mark_already_ingested(request, decision.study_uid, decision.version, outcome)
                        log.info(
                            "study already in this state", extra={"request_id": str(request.id), "outcome": outcome}
                        )
                        continue
                    try:
                        run_id = client.submit_job_execution(
                            JOB_NAME,
                            repository_location_name=self.runtime.settings.dagster_location_name,
                            repository_name="__repository__",
                            run_config=tags.study_run_config(
                                request.orthanc_id, request.correlation_id, request.trigger
                            ),
                            tags={
                                **tags.study_run_tags(
                                    request.orthanc_id, request.correlation_id, request.trigger, study_uid
                                ),
                                tags.REQUEST_ID: str(request.id),
                                **({tags.TRACEPARENT: request.traceparent} if request.traceparent else {}),
                            },
                        )
                    except Exception as exc:  # noqa: BLE001 - GraphQL, HTTP or connection errors alike
                        mark_launch_failed(request, f"{type(exc).__name__}: {str(exc)[:300]}")
                        log.warning(
                            "run launch failed", extra={"request_id": str(request.id), "error_type": type(exc).__name__}
                        )
                        # Dagster is likely down: leave the rest for the next attempt.
                        break
                    mark_launched(request, run_id)
                    # The next request of this batch for the same state must see this one.
                    session.flush()
                    launched += 1
                    log.info(
                        "run launched",
                        extra={"request_id": str(request.id), "run_id": run_id, "orthanc_id": request.orthanc_id},
                    )
        return launched


def _launch_state(orthanc: OrthancClient, orthanc_id: str) -> tuple[str | None, str | None]:
    """(LastUpdate, Study Instance UID): LastUpdate is DELETED when Orthanc has no such
    study, None when Orthanc cannot say (down as well): launch anyway, the run reports why."""
    try:
        state = orthanc.study_state(orthanc_id)
    except PipelineError:
        return None, None
    if state is None:
        return DELETED, None
    return state.last_update, state.study_uid
