"""Each service of the running stack answers its real client."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import psycopg2
import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from dicom_pipeline_dev.http import ServiceSession
from dicom_pipeline_dev.stack.layout import DAGSTER_DB, METADATA_DB

from dicom_pipeline.kafka.client_config import kafka_client_config
from dicom_pipeline.settings import Settings

pytestmark = pytest.mark.integration


def _psycopg2_url(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


def test_status_json_prints_the_contract_fields(stack_settings: Settings) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dicom_pipeline.cli", "stack", "status", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    info = json.loads(out)
    for key in (
        "orthanc_url",
        "orthanc_username",
        "orthanc_password",
        "database_url",
        "kafka_bootstrap_servers",
        "celery_broker_url",
        "kafka_client_config",
    ):
        assert info[key], key
    assert set(info["kafka_client_config"]) >= {
        "security.protocol",
        "sasl.mechanism",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
    }
    assert all(service["running"] for service in info["services"].values())


def test_second_up_reports_already_running(stack_settings: Settings) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dicom_pipeline.cli", "stack", "up"], capture_output=True, text=True, check=True
    ).stdout
    assert out.count("already running") == 5


def test_orthanc_accepts_an_upload_and_lists_it(orthanc: ServiceSession) -> None:
    from dicom_pipeline_dev.seed.send import dataset_bytes
    from dicom_pipeline_dev.seed.synth import SeedPlan, build_instances, plan_studies

    spec = plan_studies(SeedPlan(studies=1, modalities=("DX",), rows=16, columns=16, seed=4242))[0]
    ds = next(build_instances(spec))
    response = orthanc.post("/instances", data=dataset_bytes(ds))
    assert response.status_code == 200
    study_id = response.json()["ParentStudy"]
    assert study_id in orthanc.get("/studies").json()
    assert orthanc.get(f"/studies/{study_id}").json()["MainDicomTags"]["StudyInstanceUID"] == spec.study_uid


def test_orthanc_refuses_requests_without_credentials(stack_settings: Settings) -> None:
    assert requests.get(f"{stack_settings.orthanc_url}/system", timeout=5).status_code == 401


@pytest.mark.parametrize("database", [METADATA_DB, DAGSTER_DB])
def test_postgres_answers_on_both_databases(stack_settings: Settings, database: str) -> None:
    url = _psycopg2_url(stack_settings.database_url.get_secret_value()).rsplit("/", 1)[0] + f"/{database}"
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database(), 1 + 1")
        assert cur.fetchone() == (database, 2)


def test_kafka_round_trip_keeps_key_and_headers(stack_settings: Settings) -> None:
    marker = uuid.uuid4().hex
    client = {**kafka_client_config(stack_settings), "bootstrap.servers": stack_settings.kafka_bootstrap_servers}
    producer = Producer({**client, "acks": "all"})
    delivered: list[Any] = []
    producer.produce(
        stack_settings.kafka_dlq_topic,
        key=b"study-key",
        value=marker.encode(),
        headers=[("correlation_id", marker.encode())],
        on_delivery=lambda error, message: delivered.append((error, message)),
    )
    assert producer.flush(15) == 0
    [(error, sent)] = delivered
    assert error is None
    # Read exactly where the broker put it: no consumer-group join to wait for (under load
    # a new group's first assignment took longer than the test's patience).
    consumer = Consumer({**client, "group.id": f"test-{marker}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(sent.topic(), sent.partition(), sent.offset())])
    try:
        found = None
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None and message.value() == marker.encode():
                found = message
                break
        assert found is not None, "the produced message never arrived"
        assert found.key() == b"study-key"
        assert dict(found.headers() or [])["correlation_id"] == marker.encode()
    finally:
        consumer.close()


def test_an_anonymous_kafka_client_cannot_publish_but_the_pipeline_can(stack_settings: Settings) -> None:
    marker = uuid.uuid4().hex.encode()
    outcomes: dict[str, object] = {}

    def send(name: str, config: dict[str, str]) -> None:
        producer = Producer(
            {
                **config,
                "bootstrap.servers": stack_settings.kafka_bootstrap_servers,
                "message.timeout.ms": 8000,
                "log_level": 0,
            }
        )
        producer.produce(
            stack_settings.kafka_dlq_topic,
            value=marker,
            on_delivery=lambda error, _message: outcomes.__setitem__(name, error),
        )
        producer.flush(15)

    send("anonymous", {})
    send(
        "plaintext with the pipeline's password",
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": str(stack_settings.kafka_sasl_username),
            "sasl.password": stack_settings.kafka_sasl_password.get_secret_value()
            if stack_settings.kafka_sasl_password
            else "",
        },
    )
    send("wrong password", {**kafka_client_config(stack_settings), "sasl.password": "not-the-password"})
    send("pipeline", kafka_client_config(stack_settings))

    assert outcomes["pipeline"] is None, f"the pipeline's own client was refused: {outcomes['pipeline']}"
    for refused in ("anonymous", "plaintext with the pipeline's password", "wrong password"):
        assert outcomes.get(refused) is not None, f"{refused}: the broker accepted the message"
