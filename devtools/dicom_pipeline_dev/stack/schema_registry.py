"""Apicurio Registry 3 (a schema registry with a Confluent-compatible API) on loopback.

Its storage is the stack's PostgreSQL (database `schema_registry`), not Apicurio's default
in-memory H2: every event carries the id of the schema it was written with, and an id must
still resolve after the registry restarts, as it does in production. The runnable build
comes from Maven Central (cached in ~/.m2) and needs Java 21 or newer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile

import requests
from confluent_kafka.schema_registry import SchemaRegistryClient

from dicom_pipeline.kafka.contract import ContractError, register
from dicom_pipeline_dev.stack.errors import StackError
from dicom_pipeline_dev.stack.layout import DB_USER, SCHEMA_REGISTRY_DB, StackLayout
from dicom_pipeline_dev.stack.postgres import PostgresService
from dicom_pipeline_dev.stack.prerequisites import require_java, require_maven
from dicom_pipeline_dev.stack.process import PidFile, ensure_port_free, start_detached, wait_until

APICURIO = "io.apicurio:apicurio-registry-app:3.3.3:tar.gz:all"
JAVA_MINIMUM = 21


class SchemaRegistryService:
    name = "schema-registry"

    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout
        self.settings = layout.settings
        self.dir = layout.root / "schema-registry"
        self.app = self.dir / "app"
        self.log = self.dir / "schema-registry.log"
        self.pid_file = PidFile(self.dir / "schema-registry.pid", "quarkus-run.jar")

    def install(self) -> None:
        """Unpack the registry's runnable build from Maven unless it is already here."""
        if (self.app / "quarkus-run.jar").exists():
            return
        require_java(JAVA_MINIMUM, "Apicurio Registry")
        mvn = require_maven()
        with tempfile.TemporaryDirectory(dir=self.layout.root) as tmp:
            result = subprocess.run(
                [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={APICURIO}", f"-DoutputDirectory={tmp}"],
                capture_output=True,
                text=True,
                cwd=tmp,
            )
            archives = list(os.scandir(tmp))
            if result.returncode != 0 or not archives:
                tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
                raise StackError(f"Maven could not fetch {APICURIO}: {' / '.join(tail)}")
            unpacked = self.dir / "app.partial"
            shutil.rmtree(unpacked, ignore_errors=True)
            with tarfile.open(archives[0].path) as archive:
                archive.extractall(unpacked, filter="data")
            # Renamed into place whole, so a half-unpacked build is never taken for one.
            unpacked.rename(self.app)

    def running_pid(self) -> int | None:
        return self.pid_file.running_pid()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.schema_registry_port}"

    def start(self) -> None:
        ensure_port_free(
            self.settings.schema_registry_port, "the schema registry", "DICOM_PIPELINE_SCHEMA_REGISTRY_PORT"
        )
        # Its database is made with the others when PostgreSQL starts; a stack that was
        # already running before the registry joined it gets it here.
        PostgresService(self.layout).provision()
        secrets = self.layout.secrets()
        env = {
            **os.environ,
            "APICURIO_STORAGE_KIND": "sql",
            "APICURIO_STORAGE_SQL_KIND": "postgresql",
            "APICURIO_DATASOURCE_URL": (
                f"jdbc:postgresql://127.0.0.1:{self.settings.postgres_port}/{SCHEMA_REGISTRY_DB}"
            ),
            "APICURIO_DATASOURCE_USERNAME": DB_USER,
            # In the environment, not on the command line, where any local user could read it.
            "APICURIO_DATASOURCE_PASSWORD": secrets.database_password,
            # Apicurio keeps 20 connections open by default; a few are plenty for one pipeline.
            "APICURIO_DATASOURCE_JDBC_INITIAL_SIZE": "1",
            "APICURIO_DATASOURCE_JDBC_MIN_SIZE": "1",
            "APICURIO_DATASOURCE_JDBC_MAX_SIZE": "4",
            "QUARKUS_HTTP_HOST": "127.0.0.1",
            "QUARKUS_HTTP_PORT": str(self.settings.schema_registry_port),
            # The management interface (health, metrics; on/off is fixed when Apicurio is
            # built) would listen on 0.0.0.0:9000: loopback, on the port after the API's.
            "QUARKUS_MANAGEMENT_HOST": "127.0.0.1",
            "QUARKUS_MANAGEMENT_PORT": str(self.settings.schema_registry_port + 1),
        }
        argv = [require_java(JAVA_MINIMUM, "Apicurio Registry"), "-Xms64m", "-Xmx384m", "-jar", "quarkus-run.jar"]
        process = start_detached(argv, self.pid_file, self.log, cwd=self.app, env=env)
        wait_until(self.answers, "the schema registry", 120, self.log, process)

    def register_schemas(self) -> None:
        """What a deployment does before the pipeline starts (`dicom-pipeline schemas
        register`): the events' schemas and their compatibility rule, on the stack's topics."""
        client = SchemaRegistryClient({"url": self.layout.schema_registry_url(), "timeout": 10})
        try:
            register(client, self.settings)
        except ContractError as exc:
            raise StackError(
                f"the schema registry refused this checkout's event schemas ({exc}); a local stack's "
                "registry can be emptied with `dicom-pipeline stack down --purge`"
            ) from exc

    def answers(self) -> bool:
        try:
            return requests.get(self.url() + "/apis/ccompat/v7/subjects", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> bool:
        return self.pid_file.stop(timeout=30)
