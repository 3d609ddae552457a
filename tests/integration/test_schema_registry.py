"""The events' contract in the stack's real schema registry (Apicurio Registry 3.3).

The compatibility gate: the last released schemas (schemas/released/) are registered under
scratch subjects, then the registry itself is asked about the working tree's schemas; it
must accept them, and must refuse an edit that would break a consumer.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from dicom_pipeline_dev.stack.control import Stack

from dicom_pipeline.domain.events import EventEnvelope, schema_text
from dicom_pipeline.kafka.client_config import kafka_client_config
from dicom_pipeline.kafka.contract import (
    COMPATIBILITY,
    DEAD_LETTERS,
    STUDY_EVENTS,
    ContractError,
    EventSerializer,
    check,
    register,
    registry_client,
    subjects,
)
from dicom_pipeline.kafka.producer import EventProducer
from dicom_pipeline.settings import Settings

pytestmark = pytest.mark.integration

RELEASED = Path(__file__).resolve().parents[2] / "schemas" / "released"


@pytest.fixture()
def client(stack_settings: Settings) -> SchemaRegistryClient:
    found = registry_client(stack_settings)
    assert found is not None, "the stack's env file names no schema registry"
    return found


@pytest.fixture()
def scratch(stack_settings: Settings) -> Settings:
    """Settings whose topics (so subjects) no other test uses."""
    tag = uuid.uuid4().hex[:12]
    return stack_settings.model_copy(update={"kafka_topic": f"gate-{tag}", "kafka_dlq_topic": f"gate-dlq-{tag}"})


def _released() -> dict[str, str]:
    return {name: (RELEASED / f"{name}.json").read_text() for name in (STUDY_EVENTS, DEAD_LETTERS)}


def test_stack_up_registered_both_subjects_with_the_compatibility_rule(
    stack_settings: Settings, client: SchemaRegistryClient
) -> None:
    status = Stack.from_settings(stack_settings).status()
    assert status["services"]["schema-registry"]["running"]
    assert status["schema_registry_url"] == stack_settings.schema_registry_url
    for subject, name in subjects(stack_settings).items():
        latest = client.get_latest_version(subject)
        assert json.loads(str(latest.schema.schema_str)) == json.loads(schema_text(name))
        assert client.get_compatibility(subject) == COMPATIBILITY
    # Registering the same release again (every `stack up`, every deployment) adds nothing.
    before = {subject: client.get_versions(subject) for subject in subjects(stack_settings)}
    register(client, stack_settings)
    assert {subject: client.get_versions(subject) for subject in subjects(stack_settings)} == before


def test_the_working_trees_schemas_pass_the_registrys_gate_against_the_released_ones(
    client: SchemaRegistryClient, scratch: Settings
) -> None:
    register(client, scratch, _released())
    verdicts = check(client, scratch)
    assert all(v.compatible for v in verdicts), verdicts


def _property_removed(schema: dict[str, Any]) -> None:
    del schema["properties"]["instance"]


def _type_narrowed(schema: dict[str, Any]) -> None:
    schema["properties"]["trigger"] = {"type": "string"}


def _required_field_added(schema: dict[str, Any]) -> None:
    schema["properties"]["site"] = {"type": "string"}
    schema["required"].append("site")


@pytest.mark.parametrize("edit", [_property_removed, _type_narrowed, _required_field_added])
def test_an_edit_that_breaks_consumers_is_refused_by_the_registry_and_nothing_is_registered(
    client: SchemaRegistryClient, scratch: Settings, edit: Callable[[dict[str, Any]], None]
) -> None:
    register(client, scratch, _released())
    edited = json.loads(_released()[DEAD_LETTERS])
    edit(edited)
    schemas = {**_released(), DEAD_LETTERS: json.dumps(edited)}
    verdicts = {v.schema: v for v in check(client, scratch, schemas)}
    assert not verdicts[DEAD_LETTERS].compatible and verdicts[STUDY_EVENTS].compatible
    before = {subject: client.get_versions(subject) for subject in subjects(scratch)}
    with pytest.raises(ContractError, match="incompatible"):
        register(client, scratch, schemas)
    assert {subject: client.get_versions(subject) for subject in subjects(scratch)} == before
    # The same edit of the contract that is compatible (an optional field) is accepted.
    widened = copy.deepcopy(json.loads(_released()[DEAD_LETTERS]))
    widened["properties"]["site"] = {"type": "string"}
    assert all(v.compatible for v in check(client, scratch, {**_released(), DEAD_LETTERS: json.dumps(widened)}))


def test_a_producer_whose_schema_the_registry_does_not_hold_sends_nothing_and_says_why(
    stack_settings: Settings, client: SchemaRegistryClient, scratch: Settings
) -> None:
    # The subjects of `scratch` were never registered: as if a release skipped `schemas register`.
    producer = EventProducer(
        stack_settings.kafka_bootstrap_servers,
        10,
        kafka_client_config(stack_settings),
        serializer=EventSerializer(client, scratch),
    )
    event_id = str(uuid.uuid4())
    payload = {"event_id": event_id, "event_type": "ingestion.failed"}
    report = producer.send([EventEnvelope(event_id, stack_settings.kafka_dlq_topic, "k", payload, {})])
    assert report.delivered == set()
    assert "schema registry" in report.failed[event_id] and "not found" in report.failed[event_id].lower()
