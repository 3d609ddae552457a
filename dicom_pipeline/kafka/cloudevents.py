"""CloudEvents 1.0 in the Kafka protocol binding's binary mode: the value is the event's data
(the JSON payload, unchanged) and the attributes are `ce_*` headers.

Every message of both topics carries them, so Knative, Argo Events, Dapr or any CloudEvents
SDK reads the topics without knowing this project; the project's own headers stay.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from dicom_pipeline.settings import Settings

SPEC_VERSION = "1.0"
# Reverse-DNS namespace of this project's event types: org.dicom-pipeline.study.created, ...
TYPE_NAMESPACE = "org.dicom-pipeline"
CONTENT_TYPE = "application/json"


def event_source(settings: Settings) -> str:
    """Which pipeline, reading which Orthanc: the setting, or one derived from ORTHANC_URL's
    host and port (never its credentials)."""
    if settings.event_source:
        return settings.event_source
    orthanc = urlsplit(settings.orthanc_url)
    return f"urn:dicom-pipeline:orthanc:{orthanc.hostname or 'localhost'}:{orthanc.port or 80}"


def cloudevent_headers(
    event_id: str, payload: dict[str, Any], *, source: str, dataschema: str
) -> list[tuple[str, bytes]]:
    headers = {
        "ce_specversion": SPEC_VERSION,
        "ce_id": event_id,
        "ce_source": source,
        "ce_type": f"{TYPE_NAMESPACE}.{payload.get('event_type', 'unknown')}",
        "ce_time": str(payload.get("occurred_at", "")),
        "ce_dataschema": dataschema,
        "content-type": CONTENT_TYPE,
    }
    subject = _study_uid(payload)
    if subject:
        headers["ce_subject"] = subject
    return [(name, value.encode()) for name, value in headers.items() if value]


def _study_uid(payload: dict[str, Any]) -> str | None:
    study = payload.get("study")
    if isinstance(study, dict) and study.get("study_instance_uid"):
        return str(study["study_instance_uid"])
    uid = payload.get("study_instance_uid")
    return str(uid) if uid else None
