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
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import SecretStr

from dicom_pipeline.defs import tags
from dicom_pipeline.defs.step_outputs import STEP_OUTPUTS, study_step_outputs
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
    raw_files_on_delete: str = "keep"


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
    # The events' contract: where their schemas are registered (none: no schema id), and
    # the CloudEvents source.
    schema_registry_url: str | None = None
    schema_registry_basic_auth: str | None = None
    event_source: str | None = None


class PipelineSettingsResource(dg.ConfigurableResource):
    """Ingestion settings: PHI profile of events, parallelism, run liveness."""

    event_phi_profile: str = "full"
    phi_hash_key: str = ""
    download_concurrency: int = 4
    reader_processes: int = 2
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
        return tuple(
            (setting, _as_setting(setting, getattr(getattr(self, part), field)))
            for part, (_, fields) in _PARTS.items()
            for field, setting in fields.items()
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


# Which setting each field of each part holds: the one map that both directions use
# (settings -> resources for the code location, resources -> settings inside a run).
_PARTS: dict[str, tuple[type[dg.ConfigurableResource], dict[str, str]]] = {
    "orthanc": (
        OrthancResource,
        {
            "url": "orthanc_url",
            "username": "orthanc_username",
            "password": "orthanc_password",
            "timeout_seconds": "orthanc_timeout_seconds",
        },
    ),
    "database": (MetadataDatabaseResource, {"url": "database_url"}),
    "raw_store": (
        RawStoreResource,
        {
            "url": "storage_url",
            "staging_dir": "staging_dir",
            "s3_endpoint_url": "s3_endpoint_url",
            "s3_region": "s3_region",
            "raw_files_on_delete": "raw_files_on_delete",
        },
    ),
    "events": (
        EventPublisherResource,
        {
            "bootstrap_servers": "kafka_bootstrap_servers",
            "topic": "kafka_topic",
            "dlq_topic": "kafka_dlq_topic",
            "delivery_timeout_seconds": "kafka_delivery_timeout_seconds",
            "security_protocol": "kafka_security_protocol",
            "sasl_mechanism": "kafka_sasl_mechanism",
            "sasl_username": "kafka_sasl_username",
            "sasl_password": "kafka_sasl_password",
            "ssl_ca_location": "kafka_ssl_ca_location",
            "ssl_certificate_location": "kafka_ssl_certificate_location",
            "ssl_key_location": "kafka_ssl_key_location",
            "ssl_key_password": "kafka_ssl_key_password",
            "ssl_check_hostname": "kafka_ssl_check_hostname",
            "schema_registry_url": "schema_registry_url",
            "schema_registry_basic_auth": "schema_registry_basic_auth",
            "event_source": "event_source",
        },
    ),
    "pipeline": (
        PipelineSettingsResource,
        {
            "event_phi_profile": "event_phi_profile",
            "phi_hash_key": "phi_hash_key",
            "download_concurrency": "download_concurrency",
            "reader_processes": "reader_processes",
            "backfill_concurrency": "backfill_concurrency",
            "run_heartbeat_seconds": "run_heartbeat_seconds",
            "run_dead_after_seconds": "run_dead_after_seconds",
            "log_level": "log_level",
        },
    ),
}


def _as_setting(setting: str, value: Any) -> Any:
    """A resource field's value in the type of its setting (secrets, paths)."""
    annotation = Settings.model_fields[setting].annotation
    kinds = typing.get_args(annotation) or (annotation,)
    if SecretStr in kinds:
        # An optional secret left empty is no secret at all, as in the settings.
        return SecretStr(value) if value or type(None) not in kinds else None
    if Path in kinds:
        return Path(value)
    return value


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
        # Resolved here: the run may execute in another working directory (a worker).
        return str(current.resolve()) if isinstance(current, Path) else current

    ingestion = IngestionResource(
        **{
            part: resource_class(
                **{field: value(setting, getattr(settings, setting)) for field, setting in fields.items()}
            )
            for part, (resource_class, fields) in _PARTS.items()
        }
    )
    # Op outputs hold patient names (the headers): nothing of them goes into Dagster's
    # storage. The study job's ops keep a copy of what a re-execution needs in the
    # pipeline's own database, where that metadata lives anyway (defs/step_outputs.py).
    return {"ingestion": ingestion, "io_manager": dg.mem_io_manager, STEP_OUTPUTS: study_step_outputs}
