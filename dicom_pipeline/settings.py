"""One settings object for every setting of dicom-pipeline.

Values come from environment variables prefixed ``DICOM_PIPELINE_``, then an optional
``.env`` file, then the file the local stack writes (``.stack/stack.env``) so that a
developer's tools find the stack's generated credentials without copying them around.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "DICOM_PIPELINE_"


def stack_dir_from_env() -> Path:
    """The local stack's folder; the only setting read before the settings object exists."""
    return Path(os.environ.get(f"{ENV_PREFIX}STACK_DIR", ".stack")).resolve()


class Settings(BaseSettings):
    """Every setting of the pipeline, the webhook and the local stack."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        # Later files win: .env overrides what the stack generated.
        env_file=(str(stack_dir_from_env() / "stack.env"), ".env"),
        env_file_encoding="utf-8",
    )

    # Local stack (dev and tests).
    stack_dir: Path = Field(default_factory=stack_dir_from_env)
    orthanc_http_port: int = 18042
    orthanc_dicom_port: int = 14242
    orthanc_stable_age: int = 2
    postgres_port: int = 15432
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    redis_port: int = 16379
    webhook_port: int = 18000
    dagster_port: int = 13000
    schema_registry_port: int = 18081
    # Jaeger, started only on request (`stack up --with-jaeger`): OTLP/HTTP in, query API out.
    jaeger_otlp_port: int = 14318
    jaeger_query_port: int = 16686

    # Orthanc.
    orthanc_url: str = "http://127.0.0.1:18042"
    orthanc_username: str = "dicom-pipeline"
    orthanc_password: SecretStr = SecretStr("")
    orthanc_timeout_seconds: float = 30.0

    # PostgreSQL: the pipeline's metadata, and Dagster's own instance storage.
    database_url: SecretStr = SecretStr("postgresql+psycopg2://dicom_pipeline@127.0.0.1:15432/dicom_pipeline")
    dagster_database_url: SecretStr | None = None

    # Kafka.
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_topic: str = "dicom.metadata.v1"
    kafka_dlq_topic: str = "dicom.metadata.dlq"
    kafka_delivery_timeout_seconds: float = 30.0
    # Every client the project creates (producer, readiness, admin, tests) uses these; see
    # dicom_pipeline/kafka/client_config.py. The local stack's broker requires SASL_SSL.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None  # PEM file of the CA that signed the broker's certificate
    kafka_ssl_certificate_location: str | None = None  # client certificate (mutual TLS)
    kafka_ssl_key_location: str | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True
    # Schema registry with a Confluent-compatible API (Confluent's, or Apicurio's under
    # /apis/ccompat/v7). Set: `dicom-pipeline schemas register` puts the events' schemas
    # there and every message is validated against its registered schema and carries its id
    # (header `__value_schema_id`). Unset: messages are produced without a schema id.
    schema_registry_url: str | None = None
    schema_registry_basic_auth: SecretStr | None = None  # "user:password", when the registry asks for it
    # CloudEvents `source` of every message (which pipeline, which Orthanc); derived from
    # ORTHANC_URL's host and port when unset.
    event_source: str | None = Field(default=None, max_length=256)

    # Celery run workers: broker and result backend (Redis). The run launcher in
    # dagster_home/dagster.yaml and `dicom-pipeline worker` both read these.
    celery_broker_url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")
    celery_result_backend: SecretStr | None = None  # the broker's Redis when unset

    # Raw DICOM storage: file:///absolute/path or s3://bucket/prefix.
    storage_url: str = "file://" + str(Path(".stack/storage").resolve())
    staging_dir: Path = Path(".stack/staging")
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    # A study deleted in Orthanc: keep its raw files (an archive copy; default) or delete
    # them too (the store then mirrors Orthanc). README, "Deletions".
    raw_files_on_delete: Literal["keep", "delete"] = "keep"

    # Ingestion.
    download_concurrency: int = Field(default=4, ge=1, le=64)
    # Processes that read instances (download, hash, parse) for each run process, kept warm
    # (0: DOWNLOAD_CONCURRENCY threads of the run's process). README, "Throughput".
    reader_processes: int = Field(default=2, ge=0, le=64)
    backfill_concurrency: int = Field(default=4, ge=1, le=64)
    backfill_start_date: str = Field(default="2000-01-01", pattern=r"^\d{4}-\d{2}-\d{2}$")
    event_phi_profile: Literal["full", "minimal"] = "full"
    phi_hash_key: SecretStr = SecretStr("")

    # Webhook.
    webhook_url: str = "http://127.0.0.1:18000"
    webhook_token: SecretStr = SecretStr("")
    webhook_max_body_bytes: int = 4096

    # Dagster (for the webhook's launcher and readiness check).
    dagster_url: str = "http://127.0.0.1:13000"
    dagster_location_name: str = "dicom_pipeline"

    # Whether the change-feed sensor starts running on a fresh Dagster instance (the UI
    # can start and stop it later; its state is then kept by Dagster).
    change_feed_sensor: bool = True
    # Likewise for the reconcile sensor (every minute).
    reconcile_schedule: bool = True
    # The periodic pass looks for deletions nobody announced whenever Orthanc holds fewer
    # studies or instances than the database records; when the totals differ the other way
    # (arrivals in flight may hide a deletion), at most this often. ingestion/deletion_check.py.
    reconcile_deletion_check_seconds: float = Field(default=600.0, ge=0)

    # Run liveness: every run's worker records a heartbeat this often; a STARTED run silent
    # for longer than run_dead_after_seconds is marked failed by the dead_run_reaper sensor
    # (Dagster's default launcher cannot see a killed worker).
    run_heartbeat_seconds: float = Field(default=10.0, gt=0, le=60)
    run_dead_after_seconds: float = Field(default=60.0, ge=5)

    # Dagster's own storage: finished runs and their event logs are deleted after this many
    # days (failed runs after the second figure); sensor and schedule ticks per dagster.yaml.
    run_retention_days: int = Field(default=30, ge=1)
    failed_run_retention_days: int = Field(default=90, ge=1)

    log_level: str = "INFO"
    # auto: the console format when stderr is a terminal, JSON lines otherwise (dicom_pipeline/logs.py).
    log_format: Literal["auto", "console", "json"] = "auto"

    @model_validator(mode="after")
    def _dead_after_spans_several_beats(self) -> Settings:
        if self.run_dead_after_seconds < 3 * self.run_heartbeat_seconds:
            raise ValueError(
                "DICOM_PIPELINE_RUN_DEAD_AFTER_SECONDS must be at least three times "
                "DICOM_PIPELINE_RUN_HEARTBEAT_SECONDS, or live runs could be declared dead"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
