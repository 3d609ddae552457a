"""A private PostgreSQL cluster in the stack folder, run as the `postgres` user when root."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg2
from psycopg2 import sql

from dicom_pipeline.dagster_storage import migrate_dagster_schema
from dicom_pipeline_dev.stack.errors import StackError
from dicom_pipeline_dev.stack.layout import DAGSTER_DB, DB_USER, METADATA_DB, SCHEMA_REGISTRY_DB, StackLayout
from dicom_pipeline_dev.stack.prerequisites import ensure_debian_package, postgres_bin_dir
from dicom_pipeline_dev.stack.process import PidFile, ensure_port_free, stop_pid, wait_until


def _cluster_dir(stack_root: Path) -> Path:
    """The cluster's folder: inside the stack folder when the `postgres` user can reach it.

    As root the server runs as `postgres`, which cannot enter a checkout below a private
    folder (mode 700). Then the cluster lives in /var/tmp under a name derived from the
    stack folder, and a pointer file in the stack folder records where.
    """
    pointer = stack_root / "postgres.location"
    if pointer.exists():
        return Path(pointer.read_text().strip())
    preferred = stack_root / "postgres"
    if os.geteuid() != 0 or _postgres_can_reach(stack_root):
        return preferred
    digest = hashlib.sha256(str(stack_root).encode()).hexdigest()[:12]
    fallback = Path("/var/tmp") / f"dicom-pipeline-postgres-{digest}"  # noqa: S108 - name derived, owner-only
    stack_root.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(fallback))
    return fallback


def _postgres_can_reach(folder: Path) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(folder)]).returncode == 0


class PostgresService:
    name = "postgresql"

    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout
        self.dir = _cluster_dir(layout.root)
        self.data = self.dir / "data"
        self.run_dir = self.dir / "run"
        self.log = self.dir / "postgres.log"
        self.port = layout.settings.postgres_port
        self.pid_file = PidFile(self.dir / "postgres.pid", "postgres")

    # PostgreSQL refuses to run as root, so as root every server command runs as `postgres`.
    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def install(self) -> None:
        ensure_debian_package("postgresql", postgres_bin_dir() is not None)

    def running_pid(self) -> int | None:
        return self.pid_file.running_pid()

    def start(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise StackError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        ensure_port_free(self.port, "PostgreSQL", "DICOM_PIPELINE_POSTGRES_PORT")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.dir, self.run_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bin_dir)
        options = f"-p {self.port} -k {self.run_dir} -c listen_addresses=127.0.0.1"
        result = subprocess.run(
            self._as_owner(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    options,
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(
                f"PostgreSQL did not start: {result.stderr.strip() or result.stdout.strip()} (see {self.log})"
            )
        postmaster_pid = (self.data / "postmaster.pid").read_text().splitlines()[0]
        self.pid_file.path.write_text(postmaster_pid)
        wait_until(self.answers, "PostgreSQL", 30, self.log)
        self.provision()

    def _initdb(self, bin_dir: Path) -> None:
        pwfile = self.dir / "superuser.pw"
        pwfile.write_text(self.layout.secrets().postgres_superuser_password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        try:
            result = subprocess.run(
                self._as_owner(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(self.data),
                        "-U",
                        "postgres",
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--no-locale",
                    ]
                ),
                capture_output=True,
                text=True,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed: {result.stderr.strip().splitlines()[-1:]}")

    def _connect(self, user: str, password: str, database: str = "postgres") -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=user, password=password, dbname=database, connect_timeout=3
        )

    def superuser_connection(self, database: str = "postgres") -> psycopg2.extensions.connection:
        """A connection as the cluster's superuser: for provisioning, and for tools (the
        benchmarks' meter, the end-to-end tests' scratch databases) that read or create
        what the pipeline's own role may not."""
        return self._connect("postgres", self.layout.secrets().postgres_superuser_password, database)

    def answers(self) -> bool:
        try:
            conn = self.superuser_connection()
        except psycopg2.OperationalError:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        except psycopg2.Error:
            return False
        finally:
            conn.close()

    def provision(self) -> None:
        """The pipeline's role and its databases (metadata, Dagster's instance, the schema registry's)."""
        secrets = self.layout.secrets()
        conn = self.superuser_connection()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (DB_USER,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(
                    sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(DB_USER)),
                    (secrets.database_password,),
                )
                for database in (METADATA_DB, DAGSTER_DB, SCHEMA_REGISTRY_DB):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                    if cur.fetchone() is None:
                        cur.execute(
                            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                                sql.Identifier(database), sql.Identifier(DB_USER)
                            )
                        )
        finally:
            conn.close()
        # Dagster's processes do not create their tables (should_autocreate_tables: false).
        migrate_dagster_schema(self.layout.database_url(DAGSTER_DB))

    def stop(self) -> bool:
        bin_dir = postgres_bin_dir()
        if self.running_pid() is None or bin_dir is None:
            return False
        subprocess.run(
            self._as_owner([str(bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop"]),
            capture_output=True,
        )
        pid = self.running_pid()
        if pid is not None:
            stop_pid(pid)
        return True
