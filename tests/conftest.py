"""Shared fixtures: the real local stack (started by `make test`, or here if it is not)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dicom_pipeline_dev.http import ServiceSession
from dicom_pipeline_dev.seed.runner import orthanc_client
from dicom_pipeline_dev.stack.control import Stack
from dicom_pipeline_dev.stack.kafka import KafkaService

from dicom_pipeline.runtime import reset_runtime
from dicom_pipeline.settings import Settings, get_settings
from tests.helpers import KafkaTap


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Settings pointing at the running stack; brings it up if `make test` did not."""
    settings = get_settings()
    stack = Stack.from_settings(settings)
    if not all(service["running"] for service in stack.status()["services"].values()):
        stack.up(report=lambda line: None)
        get_settings.cache_clear()
        settings = get_settings()
    yield settings


@pytest.fixture()
def orthanc(stack_settings: Settings) -> Iterator[ServiceSession]:
    with orthanc_client(stack_settings, timeout=30) as client:
        yield client


@pytest.fixture()
def kafka_stopped(stack_settings: Settings) -> Iterator[KafkaService]:
    """The stack's broker stopped for the test, and started again whatever happens."""
    kafka = KafkaService(Stack.from_settings(stack_settings).layout)
    kafka.stop()
    try:
        yield kafka
    finally:
        if kafka.running_pid() is None:
            kafka.start()


@pytest.fixture()
def runtime_env(stack_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Change settings through the environment for one test; adapters are rebuilt around it."""
    reset_runtime()
    yield monkeypatch
    monkeypatch.undo()
    reset_runtime()


@pytest.fixture()
def events(stack_settings: Settings) -> Iterator[KafkaTap]:
    tap = KafkaTap(stack_settings, stack_settings.kafka_topic)
    yield tap
    tap.close()


@pytest.fixture()
def dead_letters(stack_settings: Settings) -> Iterator[KafkaTap]:
    tap = KafkaTap(stack_settings, stack_settings.kafka_dlq_topic)
    yield tap
    tap.close()


@pytest.fixture(scope="session", autouse=True)
def captured_pipeline_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every log line the project writes during the suite, for the PHI/secret audit at the end."""
    import logging

    from dicom_pipeline.logs import JsonFormatter

    handler = logging.FileHandler(tmp_path_factory.getbasetemp() / "pipeline-json.log", encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("dicom_pipeline", "webhook")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield
    for logger in loggers:
        logger.removeHandler(handler)
    handler.close()
