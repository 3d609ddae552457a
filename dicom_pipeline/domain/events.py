"""Kafka payloads: the study version event and the dead letter, and the PHI profile."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import jsonschema

from dicom_pipeline.errors import SchemaViolation
from dicom_pipeline.tracing import traceparent_of

# Each topic's schema has its own version (schemas/).
SCHEMA_VERSION = "1.1"  # dicom.metadata.v1; 1.1 added study.deleted, 1.0 events stay valid
DEAD_LETTER_SCHEMA_VERSION = "1.0"  # dicom.metadata.dlq
PhiProfile = Literal["full", "minimal"]


@dataclass(frozen=True)
class EventEnvelope:
    """What the outbox stores and the relay sends: topic, key, value and headers."""

    event_id: str
    topic: str
    key: str
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class StudyEventContext:
    """Who asked for this version and how its event should look."""

    run_id: str | None
    correlation_id: str
    trigger: str
    topic: str
    phi_profile: PhiProfile
    phi_hash_key: bytes
    storage_backend: str
    storage_location: str


def pseudonymise_patient_id(patient_id: str | None, key: bytes) -> str | None:
    """Keyed hash: stable for joining events of one patient, not reversible without the key."""
    if patient_id is None:
        return None
    return "hmac-sha256:" + hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()


def patient_block(
    patient: Mapping[str, str | None], profile: PhiProfile, hash_key: bytes
) -> dict[str, str | bool | None]:
    if profile == "full":
        return {**patient, "patient_id_hashed": False}
    return {
        "patient_id": pseudonymise_patient_id(patient.get("patient_id"), hash_key),
        "patient_id_hashed": True,
        "patient_sex": patient.get("patient_sex"),
    }


def schema_text(name: str) -> str:
    """A topic's JSON Schema as this release ships it (dicom_pipeline/schemas/)."""
    return (resources.files("dicom_pipeline.schemas") / f"{name}.json").read_text(encoding="utf-8")


@lru_cache(maxsize=4)
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_text(name))
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema, format_checker=jsonschema.FormatChecker())


def validate_payload(schema_name: str, payload: dict[str, Any]) -> None:
    """Raise SchemaViolation with the first problem's path when the payload breaks its schema."""
    error = jsonschema.exceptions.best_match(_validator(schema_name).iter_errors(payload))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise SchemaViolation(f"{schema_name} payload invalid at {where}: {error.message[:300]}")


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def event_headers(correlation_id: str, event_type: str, schema_version: str = SCHEMA_VERSION) -> dict[str, str]:
    """Headers stored with the event in the outbox. In a trace (the persist op's span), its
    traceparent too: the produce, whenever and wherever it happens, continues that trace."""
    headers = {"correlation_id": correlation_id, "event_type": event_type, "schema_version": schema_version}
    traceparent = traceparent_of()
    if traceparent:
        headers["traceparent"] = traceparent
    return headers


def dead_letter_payload(
    *,
    event_id: str,
    dead_letter_id: int,
    correlation_id: str,
    trigger: str | None,
    study_instance_uid: str | None,
    orthanc_id: str | None,
    instance: str | None,
    run_id: str | None,
    failed_op: str,
    error_type: str,
    error_message: str,
    transient: bool,
    attempts: int,
) -> dict[str, Any]:
    payload = {
        "schema_version": DEAD_LETTER_SCHEMA_VERSION,
        "event_id": event_id,
        "event_type": "ingestion.failed",
        "occurred_at": utc_now_iso(),
        "dead_letter_id": dead_letter_id,
        "correlation_id": correlation_id,
        "trigger": trigger,
        "study_instance_uid": study_instance_uid,
        "orthanc_id": orthanc_id,
        "instance": instance,
        "run_id": run_id,
        "failed_op": failed_op,
        "error_type": error_type,
        "error_message": error_message[:2000],
        "transient": transient,
        "attempts": max(attempts, 1),
    }
    validate_payload("dicom.metadata.dlq", payload)
    return payload
