"""Shared fixtures: the real local stack (started by `make test`, or here if it is not)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dicom_pipeline.settings import Settings, get_settings
from dicom_pipeline.stack.control import Stack


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
def orthanc(stack_settings: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack_settings.orthanc_url,
        auth=(stack_settings.orthanc_username, stack_settings.orthanc_password.get_secret_value()),
        timeout=30,
    ) as client:
        yield client
