"""Readiness: each dependency checked concurrently with a short timeout.

Accepting a webhook request durably needs PostgreSQL alone (the request is stored before
the 202; the launcher loop waits for Dagster, runs wait for Orthanc, the outbox for
Kafka). So only PostgreSQL decides readiness; the others are reported, in the body of
/ready and as gauges in /metrics, never failing the probe: a readiness probe that failed
on Kafka would take the webhook out of service exactly when its buffering matters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import requests
from confluent_kafka.admin import AdminClient
from sqlalchemy import text

from dicom_pipeline.kafka.client_config import kafka_client_config
from dicom_pipeline.runtime import Runtime

TIMEOUT = 2.0


def _postgres(runtime: Runtime) -> None:
    with runtime.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _orthanc(runtime: Runtime) -> None:
    with runtime.orthanc() as orthanc:
        orthanc.system()


def _kafka(runtime: Runtime) -> None:
    admin = AdminClient(
        {
            **kafka_client_config(runtime.settings),
            "bootstrap.servers": runtime.settings.kafka_bootstrap_servers,
            "socket.timeout.ms": 1500,
            "log_level": 0,
        }
    )
    metadata = admin.list_topics(timeout=TIMEOUT)
    if not metadata.brokers:
        raise ConnectionError("no Kafka broker answered")


def _dagster(runtime: Runtime) -> None:
    response = requests.get(f"{runtime.settings.dagster_url.rstrip('/')}/server_info", timeout=TIMEOUT)
    response.raise_for_status()


def _schema_registry(runtime: Runtime) -> None:
    # Events wait in the outbox while it is away (a publish needs the schema's id).
    url = f"{str(runtime.settings.schema_registry_url).rstrip('/')}/subjects"
    auth = runtime.settings.schema_registry_basic_auth
    user, _, password = auth.get_secret_value().partition(":") if auth else ("", "", "")
    response = requests.get(url, timeout=TIMEOUT, auth=(user, password) if auth else None)
    response.raise_for_status()


CHECKS: dict[str, Callable[[Runtime], None]] = {
    "postgresql": _postgres,
    "orthanc": _orthanc,
    "kafka": _kafka,
    "dagster": _dagster,
}


def checks_for(runtime: Runtime) -> dict[str, Callable[[Runtime], None]]:
    """The dependencies this deployment has: the schema registry only where one is set."""
    if runtime.settings.schema_registry_url:
        return {**CHECKS, "schema_registry": _schema_registry}
    return CHECKS


REQUIRED = "postgresql"


class DependencyMonitor:
    """The last known state of every dependency, refreshed in the background for /metrics."""

    def __init__(self, runtime: Runtime, interval: float = 15.0) -> None:
        self.runtime = runtime
        self.interval = interval
        self.states: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dependency-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> dict[str, str]:
        self.states = await check_dependencies(self.runtime)
        return self.states

    async def _loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.interval)


async def check_dependencies(runtime: Runtime) -> dict[str, str]:
    """Name -> "ok" or a short reason (never a secret: only the error type and message)."""

    async def run(name: str, check: Callable[[Runtime], None]) -> tuple[str, str]:
        try:
            await asyncio.wait_for(asyncio.to_thread(check, runtime), timeout=TIMEOUT + 1)
        except Exception as exc:  # noqa: BLE001 - every failure is a reason to report
            return name, f"{type(exc).__name__}: {str(exc)[:200]}" if str(exc) else type(exc).__name__
        return name, "ok"

    results = await asyncio.gather(*(run(name, check) for name, check in checks_for(runtime).items()))
    return dict(results)
