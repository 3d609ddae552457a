"""Request and response models of the webhook API (a contract: see README)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ORTHANC_ID_PATTERN = r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$"


class StudyNotification(BaseModel):
    """What Orthanc's OnStableStudy Lua callback posts."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    orthanc_id: str = Field(
        alias="ID",
        pattern=ORTHANC_ID_PATTERN,
        description="Orthanc's study id",
        examples=["6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c"],
    )


class DeletionNotification(BaseModel):
    """What Orthanc's OnDeletedStudy / OnDeletedInstance Lua callbacks post.

    A deleted series reaches the pipeline through its instances' callbacks (Orthanc calls
    OnDeletedInstance for every instance of a deleted series or study).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    orthanc_id: str = Field(alias="ID", pattern=ORTHANC_ID_PATTERN, description="Orthanc's id of the deleted resource")
    level: Literal["Study", "Instance"] = Field(alias="Level", description="What was deleted")


class AcceptedDeletion(BaseModel):
    request_id: uuid.UUID | None = Field(description="The study request this notice joined; null when ignored")
    correlation_id: str
    status: Literal["accepted", "ignored"] = Field(
        description="ignored: the database never held the deleted instance (nothing to withdraw)"
    )


RequestStatus = Literal["accepted", "launched", "succeeded", "failed"]


class AcceptedRequest(BaseModel):
    request_id: uuid.UUID
    correlation_id: str
    status: RequestStatus


class RequestState(BaseModel):
    request_id: uuid.UUID
    orthanc_id: str
    correlation_id: str
    status: RequestStatus
    run_id: str | None
    study_instance_uid: str | None
    version: int | None
    outcome: str | None = Field(
        description="created, updated, unchanged, superseded or deleted once succeeded; "
        "absent: a deletion notice for a study never ingested"
    )
    error: str | None
    served_by: uuid.UUID | None = Field(
        default=None, description="The earlier request for the same Orthanc state whose run serves this one"
    )
    created_at: dt.datetime
    updated_at: dt.datetime


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"] = Field(description="ready: requests are accepted durably (PostgreSQL)")
    checks: dict[str, str] = Field(description="Each dependency: ok, or why not")
    degraded: list[str] = Field(default_factory=list, description="Dependencies not answering; work waits for them")


class ErrorDetail(BaseModel):
    code: str
    message: str
    correlation_id: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail
