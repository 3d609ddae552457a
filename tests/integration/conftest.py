"""Fixtures for tests that ingest through the real services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dicom_pipeline.runtime import reset_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import KafkaTap


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
