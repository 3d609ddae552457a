"""The events' contract in a schema registry: subjects, the compatibility rule, ids on the wire.

Each topic's schema (dicom_pipeline/schemas/) is registered under its topic's value subject
(`dicom.metadata.v1-value`, `dicom.metadata.dlq-value`, Confluent's TopicNameStrategy) by
`dicom-pipeline schemas register`, which a deployment runs before the new version starts;
the running producer never registers anything. It looks its own schema up once per
subject (a schema the registry does not hold fails the publish, and the event waits in the
outbox), validates every message against it, and puts the schema's id in the
`__value_schema_id` header: the value stays plain JSON for kcat and for consumers that
read it as JSON today, and confluent-kafka's `JSONDeserializer` finds the id there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from dicom_pipeline.domain.events import schema_text
from dicom_pipeline.settings import Settings

STUDY_EVENTS = "dicom.metadata.v1"  # schema of the study events' topic
DEAD_LETTERS = "dicom.metadata.dlq"  # schema of the dead letters' topic
# Every version must read every earlier version's messages: a consumer can be pointed at
# the topic's start (a replay, a new team) with the newest schema and read it all.
COMPATIBILITY = "BACKWARD_TRANSITIVE"
SCHEMA_ID_HEADER = "__value_schema_id"  # confluent-kafka's name for a value's schema id header


class ContractError(RuntimeError):
    """The registry refused a schema, or does not hold the one the producer writes with."""


@cache
def schema_uri(name: str) -> str:
    """The schema's own `$id`: what a message names as its schema without a registry."""
    return str(json.loads(schema_text(name))["$id"])


def subjects(settings: Settings) -> dict[str, str]:
    """Subject -> the schema registered under it (TopicNameStrategy on the configured topics)."""
    return {f"{settings.kafka_topic}-value": STUDY_EVENTS, f"{settings.kafka_dlq_topic}-value": DEAD_LETTERS}


def schema_of(payload: dict[str, Any]) -> str:
    """Which schema a payload is written with: by its kind, not its topic, so a replay to
    another topic carries the same id."""
    return DEAD_LETTERS if payload.get("event_type") == "ingestion.failed" else STUDY_EVENTS


def registry_client(settings: Settings) -> SchemaRegistryClient | None:
    if not settings.schema_registry_url:
        return None
    config: dict[str, Any] = {"url": settings.schema_registry_url, "timeout": 10}
    if settings.schema_registry_basic_auth is not None:
        config["basic.auth.user.info"] = settings.schema_registry_basic_auth.get_secret_value()
    return SchemaRegistryClient(config)


@dataclass(frozen=True)
class SubjectCheck:
    subject: str
    schema: str
    compatible: bool
    detail: str


def check(
    client: SchemaRegistryClient, settings: Settings, schemas: Mapping[str, str] | None = None
) -> list[SubjectCheck]:
    """The registry's own verdict on this release's schemas (or `schemas`, name -> text)
    against every version registered under their subjects."""
    texts = schemas or {name: schema_text(name) for name in subjects(settings).values()}
    return [_check_one(client, subject, name, texts[name]) for subject, name in subjects(settings).items()]


def _check_one(client: SchemaRegistryClient, subject: str, name: str, text: str) -> SubjectCheck:
    schema = Schema(text, "JSON")
    try:
        found = client.lookup_schema(subject, schema)
        return SubjectCheck(subject, name, True, f"registered (version {found.version}, id {found.schema_id})")
    except SchemaRegistryError as exc:
        if exc.http_status_code != 404:
            raise
    try:
        versions = client.get_versions(subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code != 404:
            raise
        versions = []
    if not versions:
        return SubjectCheck(subject, name, True, "new subject")
    # Against each version, not just the latest: the rule is transitive.
    refused = [v for v in versions if not client.test_compatibility(subject, schema, version=v)]
    if refused:
        return SubjectCheck(subject, name, False, f"incompatible with version(s) {refused} ({COMPATIBILITY})")
    return SubjectCheck(subject, name, True, f"compatible with versions {versions}; not registered yet")


def wait_for_registry(client: SchemaRegistryClient, seconds: float) -> None:
    """Until the registry answers (a deployment starts it beside the pipeline), at most
    `seconds`; then the last error is the caller's."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.get_subjects()
            return
        except Exception:  # refused, reset, a 503 while it starts: all mean "not yet"
            if time.monotonic() >= deadline:
                raise
            time.sleep(2)


def register(
    client: SchemaRegistryClient, settings: Settings, schemas: Mapping[str, str] | None = None
) -> list[SubjectCheck]:
    """Register this release's schemas (or `schemas`) with the compatibility rule; all or
    none: when one is incompatible nothing is registered."""
    texts = schemas or {name: schema_text(name) for name in subjects(settings).values()}
    checks = check(client, settings, texts)
    refused = [c for c in checks if not c.compatible]
    if refused:
        raise ContractError("; ".join(f"{c.subject}: {c.detail}" for c in refused))
    done = []
    for subject, name in subjects(settings).items():
        registered = client.register_schema_full_response(subject, Schema(texts[name], "JSON"))
        # After the first version: Apicurio keeps no rule for a subject it does not hold yet.
        client.set_compatibility(subject, COMPATIBILITY)
        done.append(SubjectCheck(subject, name, True, f"id {registered.schema_id}, rule {COMPATIBILITY}"))
    return done


def _schema_id_in_header(payload: bytes, ctx: SerializationContext | None, schema_id: Any) -> bytes:
    """confluent-kafka's header form with the numeric id (magic byte 0, 4 bytes). Its own
    `header_schema_id_serializer` writes the schema's GUID, which Apicurio 3.3's Confluent
    API does not give (`guid` is null); its deserializer reads either form."""
    assert ctx is not None and isinstance(ctx.headers, list)
    ctx.headers.append((SCHEMA_ID_HEADER, schema_id.id_to_bytes()))
    return payload


class EventSerializer:
    """Values as the registry's contract has them: validated against the registered schema,
    its id in a header. One per producer; each subject is looked up once."""

    def __init__(self, client: SchemaRegistryClient, settings: Settings) -> None:
        self._client = client
        self._subject = {name: subject for subject, name in subjects(settings).items()}
        self._url = str(settings.schema_registry_url).rstrip("/")

    @cache  # noqa: B019 - one serializer per schema for this object's life (the producer's)
    def _serializer(self, name: str) -> JSONSerializer:
        subject = self._subject[name]
        return JSONSerializer(
            schema_text(name),
            self._client,
            conf={
                "auto.register.schemas": False,
                "subject.name.strategy": lambda _ctx, _record: subject,
                "schema.id.serializer": _schema_id_in_header,
            },
            json_encode=_json_text,
        )

    def __call__(self, topic: str, payload: dict[str, Any], headers: list[tuple[str, Any]]) -> tuple[bytes, str]:
        """The value's bytes (appending the id header), and the schema's URL in the registry."""
        value = self._serializer(schema_of(payload))(payload, SerializationContext(topic, MessageField.VALUE, headers))
        assert value is not None
        id_bytes = next(header for name, header in reversed(headers) if name == SCHEMA_ID_HEADER)
        schema_id = int.from_bytes(id_bytes[1:5], "big")
        return value, f"{self._url}/schemas/ids/{schema_id}"


def _json_text(payload: Any) -> str:
    # UTF-8 as it is (names in ISO_IR 192 studies stay readable), no padding: the same bytes
    # with or without a registry.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def plain_json(payload: dict[str, Any]) -> bytes:
    return _json_text(payload).encode("utf-8")
