"""POST a study notification; GET what became of it."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.ingestion_requests import (
    create_request,
    gather_deletion_notice,
    get_request,
    study_of_deleted_resource,
)
from dicom_pipeline.ingestion.requests import as_seen_by_caller
from dicom_pipeline.logs import correlation_id_var
from dicom_pipeline.tracing import traceparent_of
from webhook.deps import Authenticated, LauncherDep, RuntimeDep
from webhook.schemas import (
    AcceptedDeletion,
    AcceptedRequest,
    DeletionNotification,
    ErrorResponse,
    RequestState,
    StudyNotification,
)

log = logging.getLogger("webhook.ingestion")
router = APIRouter(prefix="/api/v1/ingestion", tags=["ingestion"], dependencies=[Authenticated])
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 503)}


@router.post("/studies", status_code=status.HTTP_202_ACCEPTED, response_model=AcceptedRequest, responses=ERRORS)
async def notify_study(body: StudyNotification, runtime: RuntimeDep, launcher: LauncherDep) -> AcceptedRequest:
    """Record the notification durably, then answer 202; the run is launched right after."""
    correlation_id = correlation_id_var.get() or str(uuid.uuid4())
    traceparent = traceparent_of()  # FastAPI's server span of this request (webhook/main.py)

    def record() -> uuid.UUID:
        with transaction(runtime.engine) as session:
            return create_request(session, body.orthanc_id, correlation_id, "webhook", traceparent).id

    try:
        request_id = await run_in_threadpool(record)
    except Exception as exc:
        log.exception("could not record the request")
        raise HTTPException(503, "the request could not be recorded; retry later") from exc
    log.info("study notification accepted", extra={"request_id": str(request_id), "orthanc_id": body.orthanc_id})
    launcher.wake()
    return AcceptedRequest(request_id=request_id, correlation_id=correlation_id, status="accepted")


@router.post("/deletions", status_code=status.HTTP_202_ACCEPTED, response_model=AcceptedDeletion, responses=ERRORS)
async def notify_deletion(body: DeletionNotification, runtime: RuntimeDep, launcher: LauncherDep) -> AcceptedDeletion:
    """Record that Orthanc deleted a study or an instance; the study's run then records it.

    All notices of one study that arrive before its run is launched share one request.
    """
    correlation_id = correlation_id_var.get() or str(uuid.uuid4())
    traceparent = traceparent_of()

    def record() -> uuid.UUID | None:
        with transaction(runtime.engine) as session:
            study = study_of_deleted_resource(session, body.level, body.orthanc_id)
            if study is None:
                return None
            return gather_deletion_notice(session, study, correlation_id, traceparent).id

    try:
        request_id = await run_in_threadpool(record)
    except Exception as exc:
        log.exception("could not record the deletion notice")
        raise HTTPException(503, "the notice could not be recorded; retry later") from exc
    if request_id is None:
        log.info("deleted instance was never ingested", extra={"orthanc_id": body.orthanc_id})
        return AcceptedDeletion(request_id=None, correlation_id=correlation_id, status="ignored")
    log.info(
        "deletion notice accepted",
        extra={"request_id": str(request_id), "orthanc_id": body.orthanc_id, "resource": body.level},
    )
    launcher.wake()
    return AcceptedDeletion(request_id=request_id, correlation_id=correlation_id, status="accepted")


@router.get("/studies/{request_id}", response_model=RequestState, responses=ERRORS)
async def request_state(request_id: uuid.UUID, runtime: RuntimeDep) -> RequestState:
    def load() -> RequestState | None:
        with transaction(runtime.engine) as session:
            row = get_request(session, request_id)
            if row is None:
                return None
            # A duplicate reads as the request whose run serves it.
            serving = as_seen_by_caller(session, row)
            return RequestState(
                request_id=row.id,
                orthanc_id=row.orthanc_id,
                correlation_id=row.correlation_id,
                status=serving.status,  # type: ignore[arg-type]
                run_id=serving.run_id,
                study_instance_uid=serving.study_instance_uid,
                version=serving.version,
                outcome=serving.outcome,
                error=serving.error,
                served_by=serving.id if serving.id != row.id else None,
                created_at=row.created_at,
                updated_at=row.updated_at,
            )

    state = await run_in_threadpool(load)
    if state is None:
        raise HTTPException(404, f"no ingestion request {request_id}")
    return state
