"""`dicom-pipeline stack up | down | status`: the services as one unit."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from dicom_pipeline.settings import Settings
from dicom_pipeline_dev.stack.jaeger import JaegerService
from dicom_pipeline_dev.stack.kafka import KafkaService
from dicom_pipeline_dev.stack.layout import DAGSTER_DB, StackLayout
from dicom_pipeline_dev.stack.orthanc import OrthancService
from dicom_pipeline_dev.stack.postgres import PostgresService
from dicom_pipeline_dev.stack.redis import RedisService
from dicom_pipeline_dev.stack.schema_registry import SchemaRegistryService


class Service(Protocol):
    name: str

    def install(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> bool: ...
    def running_pid(self) -> int | None: ...
    def answers(self) -> bool: ...


@dataclass
class Stack:
    layout: StackLayout

    @classmethod
    def from_settings(cls, settings: Settings) -> Stack:
        return cls(StackLayout(settings))

    @property
    def services(self) -> list[Service]:
        # PostgreSQL first: it is what the other processes of the project need first.
        return [
            PostgresService(self.layout),
            RedisService(self.layout),
            OrthancService(self.layout),
            KafkaService(self.layout),
            SchemaRegistryService(self.layout),
        ]

    def up(self, report: Any = print, *, with_jaeger: bool = False) -> None:
        """`with_jaeger`: Jaeger too (traces' backend; not needed otherwise, and slow to build)."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.layout.secrets()
        self.layout.write_env_file()
        for service in self.services + ([JaegerService(self.layout)] if with_jaeger else []):
            if service.running_pid() is not None and service.answers():
                report(f"{service.name}: already running")
                continue
            started = time.monotonic()
            service.install()
            service.start()
            report(f"{service.name}: started in {time.monotonic() - started:.1f}s")
        # Every time, not only when the registry starts: a checkout's schemas may be newer
        # than the ones its running registry holds (refused if incompatible).
        SchemaRegistryService(self.layout).register_schemas()

    def down(self, purge: bool = False, report: Any = print) -> None:
        if JaegerService(self.layout).stop():  # started on request only: said only if it ran
            report("jaeger: stopped")
        for service in reversed(self.services):
            stopped = service.stop()
            report(f"{service.name}: {'stopped' if stopped else 'not running'}")
        if purge and self.layout.root.exists():
            postgres_dir = PostgresService(self.layout).dir
            if not postgres_dir.is_relative_to(self.layout.root):
                shutil.rmtree(postgres_dir, ignore_errors=True)
            shutil.rmtree(self.layout.root)
            report(f"removed {self.layout.root}")

    def status(self) -> dict[str, Any]:
        secrets = self.layout.secrets() if self.layout.secrets_path.exists() else None
        services = {}
        for service in self.services:
            pid = service.running_pid()
            services[service.name] = {"pid": pid, "running": pid is not None and service.answers()}
        info: dict[str, Any] = {
            "stack_dir": str(self.layout.root),
            "orthanc_url": self.layout.orthanc_url(),
            "orthanc_dicom_port": self.layout.settings.orthanc_dicom_port,
            "orthanc_username": self.layout.settings.orthanc_username,
            "orthanc_password": secrets.orthanc_password if secrets else None,
            "database_url": self.layout.database_url() if secrets else None,
            "dagster_database_url": self.layout.database_url(DAGSTER_DB) if secrets else None,
            "kafka_bootstrap_servers": self.layout.kafka_bootstrap_servers(),
            # What a client needs besides bootstrap.servers (librdkafka property names).
            "kafka_client_config": self.layout.kafka_client_config() if secrets else None,
            # Broker and result backend of the Celery run workers (one Redis database).
            "celery_broker_url": self.layout.celery_broker_url() if secrets else None,
            # Confluent-compatible API of the stack's Apicurio Registry (the events' schemas).
            "schema_registry_url": self.layout.schema_registry_url(),
            "env_file": str(self.layout.env_path),
            "services": services,
        }
        if _http_ok(self.layout.webhook_url() + "/health"):
            info["webhook_url"] = self.layout.webhook_url()
        if _http_ok(self.layout.dagster_url() + "/server_info"):
            info["dagster_url"] = self.layout.dagster_url()
        return info


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
