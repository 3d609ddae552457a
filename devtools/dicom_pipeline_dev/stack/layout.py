"""Where the stack keeps its data, and the credentials it generates once."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from dicom_pipeline.settings import Settings

DB_USER = "dicom_pipeline"
# SCRAM users of the stack's broker: the broker itself (and the stack's admin client), and
# the pipeline's clients.
KAFKA_ADMIN_USER = "admin"
KAFKA_CLIENT_USER = "dicom-pipeline"
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
METADATA_DB = "dicom_pipeline"
DAGSTER_DB = "dagster"
SCHEMA_REGISTRY_DB = "schema_registry"  # Apicurio Registry's storage


@dataclass(frozen=True)
class StackSecrets:
    orthanc_password: str
    postgres_superuser_password: str
    database_password: str
    webhook_token: str
    phi_hash_key: str
    redis_password: str
    kafka_admin_password: str
    kafka_client_password: str
    kafka_keystore_password: str

    @classmethod
    def load_or_create(cls, path: Path) -> StackSecrets:
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        # A stack made by an older version lacks the newer secrets: generate just those.
        missing = {
            name: secrets.token_urlsafe(32 if name in ("webhook_token", "phi_hash_key") else 18)
            for name in cls.__dataclass_fields__
            if name not in stored
        }
        if missing:
            stored.update(missing)
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_private(path, json.dumps(stored, indent=2))
        return cls(**{name: stored[name] for name in cls.__dataclass_fields__})


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


@dataclass(frozen=True)
class StackLayout:
    settings: Settings

    @property
    def root(self) -> Path:
        return self.settings.stack_dir

    @property
    def secrets_path(self) -> Path:
        return self.root / "secrets.json"

    @property
    def env_path(self) -> Path:
        return self.root / "stack.env"

    def secrets(self) -> StackSecrets:
        return StackSecrets.load_or_create(self.secrets_path)

    def orthanc_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.orthanc_http_port}"

    def database_url(self, database: str = METADATA_DB) -> str:
        password = self.secrets().database_password
        return f"postgresql+psycopg2://{DB_USER}:{password}@127.0.0.1:{self.settings.postgres_port}/{database}"

    def kafka_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_port}"

    @property
    def kafka_tls_dir(self) -> Path:
        return self.root / "kafka" / "tls"

    @property
    def kafka_ca_path(self) -> Path:
        return self.kafka_tls_dir / "ca.pem"

    def kafka_client_config(self, *, admin: bool = False) -> dict[str, str]:
        """librdkafka properties besides bootstrap.servers: SASL/SCRAM over TLS, our CA."""
        s = self.secrets()
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": KAFKA_SASL_MECHANISM,
            "sasl.username": KAFKA_ADMIN_USER if admin else KAFKA_CLIENT_USER,
            "sasl.password": s.kafka_admin_password if admin else s.kafka_client_password,
            "ssl.ca.location": str(self.kafka_ca_path),
        }

    def celery_broker_url(self) -> str:
        return f"redis://:{self.secrets().redis_password}@127.0.0.1:{self.settings.redis_port}/0"

    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.webhook_port}"

    def dagster_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.dagster_port}"

    def schema_registry_url(self) -> str:
        """The registry's Confluent-compatible API, what confluent-kafka's client is given."""
        return f"http://127.0.0.1:{self.settings.schema_registry_port}/apis/ccompat/v7"

    def write_env_file(self) -> None:
        """Settings for every tool of the project, pointing at this stack."""
        s = self.secrets()
        prefix = "DICOM_PIPELINE_"
        values = {
            "ORTHANC_URL": self.orthanc_url(),
            "ORTHANC_USERNAME": self.settings.orthanc_username,
            "ORTHANC_PASSWORD": s.orthanc_password,
            "DATABASE_URL": self.database_url(METADATA_DB),
            "DAGSTER_DATABASE_URL": self.database_url(DAGSTER_DB),
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers(),
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": KAFKA_SASL_MECHANISM,
            "KAFKA_SASL_USERNAME": KAFKA_CLIENT_USER,
            "KAFKA_SASL_PASSWORD": s.kafka_client_password,
            "KAFKA_SSL_CA_LOCATION": str(self.kafka_ca_path),
            "CELERY_BROKER_URL": self.celery_broker_url(),
            "WEBHOOK_URL": self.webhook_url(),
            "WEBHOOK_TOKEN": s.webhook_token,
            "DAGSTER_URL": self.dagster_url(),
            "SCHEMA_REGISTRY_URL": self.schema_registry_url(),
            "PHI_HASH_KEY": s.phi_hash_key,
            "STORAGE_URL": "file://" + str(self.root / "storage"),
            "STAGING_DIR": str(self.root / "staging"),
        }
        lines = [f"{prefix}{key}={value}" for key, value in values.items()]
        _write_private(self.env_path, "# written by `dicom-pipeline stack up`\n" + "\n".join(lines) + "\n")
