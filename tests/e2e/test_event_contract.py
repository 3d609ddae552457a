"""Consumers read the events as they would in production: studies ingested through the daemon
(Orthanc's own webhook call, a Celery run worker), their messages read from both topics.

- confluent-kafka's JSONDeserializer, given only a SchemaRegistryClient for the stack's
  registry, finds each message's schema by the id in its header, and validates and decodes it;
- the CloudEvents SDK parses each message in binary mode;
- the value is plain JSON, as kcat shows it (the id is in a header, not a prefix of the
  value). kcat itself is not run: Debian's kcat 1.7.1 (librdkafka 2.0.2) fails SCRAM-SHA-512
  against Kafka 4.3 with the right password ("invalid credentials" in the broker's log).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage as CloudEventsMessage
from cloudevents.core.bindings.kafka import from_binary_event
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from dicom_pipeline_dev.seed.synth import SeedPlan, build_instances, plan_studies

from dicom_pipeline.kafka.contract import SCHEMA_ID_HEADER, registry_client
from dicom_pipeline.settings import Settings
from tests.e2e.system import System, running_system, wait_for
from tests.helpers import KafkaMessage, KafkaTap, clear_change_log, seed_one, unique_seed, upload

pytestmark = pytest.mark.e2e

TIMEOUT = 180  # a hang guard only


@pytest.fixture(scope="module")
def system(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    clear_change_log(stack_settings)
    with running_system(stack_settings, Path(tmp_path_factory.mktemp("contract-system")), sensor=False) as system:
        system.start_dagster(workers=1)
        system.start_webhook()
        yield system


@pytest.fixture()
def registry(stack_settings: Settings) -> SchemaRegistryClient:
    client = registry_client(stack_settings)
    assert client is not None
    return client


def _read(tap: KafkaTap, key: str) -> KafkaMessage:
    found = wait_for(lambda: tap.read(expected=1, timeout=5, key=key) or None, TIMEOUT, f"a message for {key}")
    assert isinstance(found, list)
    return found[0]


def _consume_as_production_would(
    registry: SchemaRegistryClient, topic: str, message: KafkaMessage
) -> tuple[dict[str, Any], dict[str, Any]]:
    headers: list[tuple[str, str | bytes | None]] = list(message.raw_headers)
    decoded = JSONDeserializer(None, schema_registry_client=registry)(
        message.raw_value, SerializationContext(topic, MessageField.VALUE, headers)
    )
    event = from_binary_event(CloudEventsMessage(dict(message.raw_headers), message.key, message.raw_value))
    attributes = {
        "id": event.get_id(),
        "type": event.get_type(),
        "source": event.get_source(),
        "subject": event.get_subject(),
        "dataschema": event.get_dataschema(),
        "datacontenttype": event.get_datacontenttype(),
        "time": event.get_time(),
        "data": event.get_data(),
    }
    assert isinstance(decoded, dict)
    return decoded, attributes


def test_a_study_event_decodes_with_the_registry_and_parses_as_a_cloudevent(
    stack_settings: Settings, system: System, registry: SchemaRegistryClient, events: KafkaTap
) -> None:
    seeded, _spec = seed_one(stack_settings, series=1, instances=2, size=16)
    message = _read(events, seeded.study_instance_uid)

    decoded, attributes = _consume_as_production_would(registry, stack_settings.kafka_topic, message)

    assert decoded == message.value and decoded["event_type"] == "study.created"
    schema_id = int.from_bytes(dict(message.raw_headers)[SCHEMA_ID_HEADER][1:5], "big")
    assert json.loads(str(registry.get_schema(schema_id).schema_str))["$id"].endswith("dicom.metadata.v1")
    assert attributes["id"] == decoded["event_id"]
    assert attributes["type"] == "org.dicom-pipeline.study.created"
    assert attributes["subject"] == seeded.study_instance_uid
    assert attributes["source"] == f"urn:dicom-pipeline:orthanc:127.0.0.1:{stack_settings.orthanc_http_port}"
    assert attributes["dataschema"] == f"{stack_settings.schema_registry_url}/schemas/ids/{schema_id}"
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["data"] == decoded
    # The project's own headers are still there.
    assert {"correlation_id", "event_type", "schema_version", "event_id"} <= set(message.headers)
    # Plain JSON on the wire (no magic-byte prefix): what kcat or any JSON consumer reads is
    # the event itself.
    assert message.raw_value.startswith(b"{") and json.loads(message.raw_value) == decoded


def test_a_dead_letter_decodes_with_the_registry_and_parses_as_a_cloudevent(
    stack_settings: Settings, system: System, registry: SchemaRegistryClient, dead_letters: KafkaTap
) -> None:
    plan = SeedPlan(studies=1, modalities=("CT",), series_per_study=1, instances_per_series=2, seed=unique_seed())
    spec = plan_studies(plan)[0]
    datasets = list(build_instances(spec, plan.seed))
    # A SOP Instance UID with a control character: the run fails and dead-letters the study.
    datasets[0].SOPInstanceUID = datasets[0].SOPInstanceUID + "\x01"
    upload(stack_settings, datasets)
    message = _read(dead_letters, spec.study_uid)

    decoded, attributes = _consume_as_production_would(registry, stack_settings.kafka_dlq_topic, message)

    assert decoded == message.value and decoded["event_type"] == "ingestion.failed"
    assert attributes["id"] == decoded["event_id"]
    assert attributes["type"] == "org.dicom-pipeline.ingestion.failed"
    assert attributes["subject"] == spec.study_uid
    assert str(attributes["dataschema"]).startswith(f"{stack_settings.schema_registry_url}/schemas/ids/")
    assert message.raw_value.startswith(b"{") and json.loads(message.raw_value) == decoded
