"""Dagster resources: typed configuration of every adapter, from the environment.

`resources_from_settings` gives each field an `EnvVar` where the variable is set (resolved
when a run or tick starts, hidden in the UI) and the setting's value otherwise, so the
definitions can be built without reading a secret. Tests hand in resources built from
their own `Settings` instead of changing the environment.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import SecretStr

from dicom_pipeline.defs import tags
from dicom_pipeline.run_liveness import Heartbeat
from dicom_pipeline.runtime import Runtime
from dicom_pipeline.settings import ENV_PREFIX, Settings


class OrthancResource(dg.ConfigurableResource):
    """Orthanc's REST API."""

    url: str
    username: str
    password: str
    timeout_seconds: float = 30.0


class MetadataDatabaseResource(dg.ConfigurableResource):
    """The pipeline's PostgreSQL database (metadata only, never pixel data)."""

    url: str


class RawStoreResource(dg.ConfigurableResource):
    """Where raw DICOM files go (file:// or s3://), and the local scratch folder for staging."""

    url: str
    staging_dir: str
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"


class EventPublisherResource(dg.ConfigurableResource):
    """Kafka: where and how to connect (TLS, SASL), topics, and how long a publish waits."""

    bootstrap_servers: str
    topic: str = "dicom.metadata.v1"
    dlq_topic: str = "dicom.metadata.dlq"
    delivery_timeout_seconds: float = 30.0
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = None
    ssl_check_hostname: bool = True


class PipelineSettingsResource(dg.ConfigurableResource):
    """Ingestion settings: PHI profile of events, parallelism, run liveness."""

    event_phi_profile: str = "full"
    phi_hash_key: str = ""
    download_concurrency: int = 4
    backfill_concurrency: int = 4
    run_heartbeat_seconds: float = 10.0
    run_dead_after_seconds: float = 60.0
    log_level: str = "INFO"


class IngestionResource(dg.ConfigurableResource):
    """Everything a run needs to ingest studies: Orthanc, PostgreSQL, the raw store, Kafka.

    While a run holds it, the run beats (so a lost worker is noticed, see run_liveness),
    is tagged with the worker process that executes it, and owns a scratch folder that is
    removed when the run ends.
    """

    orthanc: OrthancResource
    database: MetadataDatabaseResource
    raw_store: RawStoreResource
    events: EventPublisherResource
    pipeline: PipelineSettingsResource

    def settings(self) -> Settings:
        return _runtime_of(self._values()).settings

    def runtime(self) -> Runtime:
        """The adapters for this configuration (one set per process and configuration)."""
        return _runtime_of(self._values())

    def _values(self) -> tuple[tuple[str, Any], ...]:
        return (
            ("orthanc_url", self.orthanc.url),
            ("orthanc_username", self.orthanc.username),
            ("orthanc_password", SecretStr(self.orthanc.password)),
            ("orthanc_timeout_seconds", self.orthanc.timeout_seconds),
            ("database_url", SecretStr(self.database.url)),
            ("storage_url", self.raw_store.url),
            ("staging_dir", Path(self.raw_store.staging_dir)),
            ("s3_endpoint_url", self.raw_store.s3_endpoint_url),
            ("s3_region", self.raw_store.s3_region),
            ("kafka_bootstrap_servers", self.events.bootstrap_servers),
            ("kafka_topic", self.events.topic),
            ("kafka_dlq_topic", self.events.dlq_topic),
            ("kafka_delivery_timeout_seconds", self.events.delivery_timeout_seconds),
            ("kafka_security_protocol", self.events.security_protocol),
            ("kafka_sasl_mechanism", self.events.sasl_mechanism),
            ("kafka_sasl_username", self.events.sasl_username),
            ("kafka_sasl_password", _secret(self.events.sasl_password)),
            ("kafka_ssl_ca_location", self.events.ssl_ca_location),
            ("kafka_ssl_certificate_location", self.events.ssl_certificate_location),
            ("kafka_ssl_key_location", self.events.ssl_key_location),
            ("kafka_ssl_key_password", _secret(self.events.ssl_key_password)),
            ("kafka_ssl_check_hostname", self.events.ssl_check_hostname),
            ("event_phi_profile", self.pipeline.event_phi_profile),
            ("phi_hash_key", SecretStr(self.pipeline.phi_hash_key)),
            ("download_concurrency", self.pipeline.download_concurrency),
            ("backfill_concurrency", self.pipeline.backfill_concurrency),
            ("run_heartbeat_seconds", self.pipeline.run_heartbeat_seconds),
            ("run_dead_after_seconds", self.pipeline.run_dead_after_seconds),
            ("log_level", self.pipeline.log_level),
        )

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[IngestionResource]:
        run = context.run
        if run is None:  # a sensor tick or a test: nothing to keep alive
            yield self
            return
        runtime = self.runtime()
        if context.instance is not None:
            # Which worker executes the run, in the UI's run tags (several hosts share the queue).
            context.instance.add_run_tags(run.run_id, {tags.WORKER: f"{socket.gethostname()}:{os.getpid()}"})
        heartbeat = Heartbeat(
            lambda: runtime.engine,
            run_id=run.run_id,
            job_name=run.job_name,
            interval=runtime.settings.run_heartbeat_seconds,
        )
        with heartbeat:
            try:
                yield self
            finally:
                shutil.rmtree(runtime.run_staging(run.run_id), ignore_errors=True)


def _secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value else None


@lru_cache(maxsize=16)
def _runtime_of(values: tuple[tuple[str, Any], ...]) -> Runtime:
    # model_construct: the values are the resource's, not the environment's.
    return Runtime(Settings.model_construct(**dict(values)))


def resources_from_settings(settings: Settings, *, from_env: bool = False) -> dict[str, Any]:
    """The code location's resources. `from_env`: an EnvVar for each variable that is set,
    so values (secrets above all) are read where runs execute, and never shown in the UI."""

    def value(name: str, current: Any) -> Any:
        variable = ENV_PREFIX + name.upper()
        if from_env and variable in os.environ:
            if isinstance(current, bool):
                return current
            if isinstance(current, int):
                return dg.EnvVar.int(variable)
            if isinstance(current, float):
                return float(os.environ[variable])
            return dg.EnvVar(variable)
        if isinstance(current, SecretStr):
            return current.get_secret_value()
        return str(current) if isinstance(current, Path) else current

    s = settings
    ingestion = IngestionResource(
        orthanc=OrthancResource(
            url=value("orthanc_url", s.orthanc_url),
            username=value("orthanc_username", s.orthanc_username),
            password=value("orthanc_password", s.orthanc_password),
            timeout_seconds=value("orthanc_timeout_seconds", s.orthanc_timeout_seconds),
        ),
        database=MetadataDatabaseResource(url=value("database_url", s.database_url)),
        raw_store=RawStoreResource(
            url=value("storage_url", s.storage_url),
            staging_dir=value("staging_dir", s.staging_dir.resolve()),
            s3_endpoint_url=value("s3_endpoint_url", s.s3_endpoint_url),
            s3_region=value("s3_region", s.s3_region),
        ),
        events=EventPublisherResource(
            bootstrap_servers=value("kafka_bootstrap_servers", s.kafka_bootstrap_servers),
            topic=value("kafka_topic", s.kafka_topic),
            dlq_topic=value("kafka_dlq_topic", s.kafka_dlq_topic),
            delivery_timeout_seconds=value("kafka_delivery_timeout_seconds", s.kafka_delivery_timeout_seconds),
            security_protocol=value("kafka_security_protocol", s.kafka_security_protocol),
            sasl_mechanism=value("kafka_sasl_mechanism", s.kafka_sasl_mechanism),
            sasl_username=value("kafka_sasl_username", s.kafka_sasl_username),
            sasl_password=value("kafka_sasl_password", s.kafka_sasl_password),
            ssl_ca_location=value("kafka_ssl_ca_location", s.kafka_ssl_ca_location),
            ssl_certificate_location=value("kafka_ssl_certificate_location", s.kafka_ssl_certificate_location),
            ssl_key_location=value("kafka_ssl_key_location", s.kafka_ssl_key_location),
            ssl_key_password=value("kafka_ssl_key_password", s.kafka_ssl_key_password),
            ssl_check_hostname=value("kafka_ssl_check_hostname", s.kafka_ssl_check_hostname),
        ),
        pipeline=PipelineSettingsResource(
            event_phi_profile=value("event_phi_profile", s.event_phi_profile),
            phi_hash_key=value("phi_hash_key", s.phi_hash_key),
            download_concurrency=value("download_concurrency", s.download_concurrency),
            backfill_concurrency=value("backfill_concurrency", s.backfill_concurrency),
            run_heartbeat_seconds=value("run_heartbeat_seconds", s.run_heartbeat_seconds),
            run_dead_after_seconds=value("run_dead_after_seconds", s.run_dead_after_seconds),
            log_level=value("log_level", s.log_level),
        ),
    )
    # Op outputs (which hold patient names from the headers) stay in memory: nothing with
    # PHI is pickled into Dagster's storage. Re-execute a study run as a whole.
    return {"ingestion": ingestion, "io_manager": dg.mem_io_manager}
