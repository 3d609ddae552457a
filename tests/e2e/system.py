"""Dagster webserver + daemon, Celery run workers and the webhook as real processes, on a fresh
Dagster database and an empty run queue."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests
from dicom_pipeline_dev.stack.layout import DB_USER, StackLayout
from dicom_pipeline_dev.stack.postgres import PostgresService
from psycopg2 import sql

from dicom_pipeline.dagster_storage import migrate_dagster_schema
from dicom_pipeline.settings import Settings
from tests.helpers import clear_change_log, outbox_published, query

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
E2E_DB = "dagster_e2e"
FINISHED_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


def fresh_dagster_database(settings: Settings) -> str:
    """A new, empty Dagster instance database: no sensor cursor or run history from before."""
    layout = StackLayout(settings)
    conn = PostgresService(layout).superuser_connection()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(E2E_DB)))
        cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(E2E_DB), sql.Identifier(DB_USER)))
    conn.close()
    url = layout.database_url(E2E_DB)
    migrate_dagster_schema(url)
    return url


STUDY_RUNS_QUERY = """
query StudyRuns($value: String!) {
  runsOrError(filter: {tags: [{key: "dicom/orthanc_id", value: $value}]}) {
    ... on Runs { results { runId status startTime endTime parentRunId tags { key value } } }
  }
}
"""


@dataclass
class System:
    settings: Settings
    home: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.webhook_port}"

    @property
    def dagster_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.dagster_port}"

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_worker(self, name: str = "w1", concurrency: int = 2) -> subprocess.Popen[bytes]:
        """A Celery run worker as its own "host": own process group, name and scratch folder."""
        scratch = self.home / f"scratch-{name}"
        scratch.mkdir(exist_ok=True)
        env = {**self.env, "DICOM_PIPELINE_STAGING_DIR": str(scratch)}
        log = open(self.home / f"worker-{name}.log", "ab")  # noqa: SIM115 - closed with the process
        argv = [str(BIN / "dicom-pipeline"), "worker", "-c", str(concurrency), "-n", f"{name}@e2e"]
        if os.geteuid() == 0 and shutil.which("unshare"):
            # Its own hostname (a UTS namespace), as a worker on another machine would have.
            argv = ["unshare", "--uts", "sh", "-c", f'hostname "{name}-e2e-host" && exec "$0" "$@"', *argv]
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[f"worker-{name}"] = process
        _wait_log(self.home / f"worker-{name}.log", "ready.", 60, f"worker {name}")
        return process

    def start_webserver(self) -> None:
        self._start(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.settings.dagster_port),
            ],
        )

    def start_dagster(self, daemon: bool = True, workers: int = 1) -> None:
        self.start_webserver()
        if daemon:
            self.start_daemon()
        for index in range(workers):
            if f"worker-w{index + 1}" not in self.processes:
                self.start_worker(f"w{index + 1}")
        _wait_http(f"{self.dagster_url}/server_info", 120, "Dagster webserver")

    def start_daemon(self) -> None:
        self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])

    def start_webhook(self) -> None:
        self._start(
            "webhook",
            [
                str(BIN / "uvicorn"),
                "--factory",
                "webhook.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.settings.webhook_port),
            ],
        )
        _wait_http(f"{self.webhook_url}/health", 60, "webhook")

    def ensure(self, *, dagster: bool, webhook: bool) -> None:
        """Bring the processes to the state a test needs, whatever the test before left."""
        dagster_names = ("webserver", "daemon", "worker-w1")
        if not dagster:
            self.stop(*[n for n in dagster_names if n in self.processes])
        elif any(n not in self.processes for n in dagster_names):
            self.stop(*[n for n in dagster_names if n in self.processes])
            self.start_dagster()
        if webhook and "webhook" not in self.processes:
            self.start_webhook()
        elif not webhook and "webhook" in self.processes:
            self.stop("webhook")

    def stop(self, *names: str) -> None:
        for name in names or list(self.processes):
            process = self.processes.pop(name, None)
            if process is None:
                continue
            with _suppress_lookup():
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with _suppress_lookup():
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def study_runs(self, orthanc_id: str) -> list[dict[str, object]]:
        """Every Dagster run of one study (by its Orthanc id tag), as the webserver reports it."""
        response = requests.post(
            f"{self.dagster_url}/graphql",
            json={"query": STUDY_RUNS_QUERY, "variables": {"value": orthanc_id}},
            timeout=30,
        )
        response.raise_for_status()
        results: list[dict[str, object]] = response.json()["data"]["runsOrError"]["results"]
        return results

    def settled(self, orthanc_id: str, study_uid: str) -> bool:
        """Nothing is left that could send an event of the study: no webhook request of it
        unfinished, no run of it queued or in progress, each of its events on its topic
        (KafkaTap.read_all)."""
        unfinished = query(
            "SELECT count(*) FROM ingestion_request WHERE orthanc_id = :id AND status NOT IN ('succeeded', 'failed')",
            id=orthanc_id,
        )
        return (
            unfinished == [(0,)]
            and all(str(run["status"]) in FINISHED_RUN_STATUSES for run in self.study_runs(orthanc_id))
            and outbox_published(study_uid)
        )

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.home.glob("*.log"))


@contextmanager
def _suppress_lookup() -> Iterator[None]:
    with suppress(ProcessLookupError):
        yield


def _wait_log(path: Path, marker: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and marker in path.read_text(errors="replace"):
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} did not log {marker!r} within {timeout}s")


def purge_run_queue(settings: Settings) -> None:
    """Runs queued by an earlier system belong to another Dagster database: drop them."""
    redis.Redis.from_url(settings.celery_broker_url.get_secret_value()).flushdb()


def free_port() -> int:
    """A loopback port nothing listens on now (for a helper server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str) -> int | None:
    """The status a GET gets, or None when nothing answers."""
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return None


def _wait_http(url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} did not answer {url} within {timeout}s")


@contextmanager
def running_system(
    settings: Settings, tmp: Path, *, sensor: bool, start_timeout_seconds: int | None = None
) -> Iterator[System]:
    """`start_timeout_seconds`: the instance's run_monitoring.start_timeout_seconds, for a
    test that waits it out (dagster_home/dagster.yaml's when None)."""
    home = tmp / "dagster_home"
    home.mkdir(parents=True)
    instance = (REPO / "dagster_home" / "dagster.yaml").read_text()
    if start_timeout_seconds is not None:
        setting = "start_timeout_seconds: "
        assert setting in instance, f"dagster_home/dagster.yaml has no {setting}"
        instance = re.sub(rf"{setting}\d+", f"{setting}{start_timeout_seconds}", instance)
    (home / "dagster.yaml").write_text(instance)
    env = dict(os.environ)
    env.update(settings_env(settings))
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "DICOM_PIPELINE_DAGSTER_DATABASE_URL": fresh_dagster_database(settings),
            "DICOM_PIPELINE_CHANGE_FEED_SENSOR": "true" if sensor else "false",
            # A quarter-hour reconcile tick would race the trigger under test for the study
            # (seen in CI: the sensor-path study ingested with trigger "reconcile").
            "DICOM_PIPELINE_RECONCILE_SCHEDULE": "false",
            "DICOM_PIPELINE_DAGSTER_URL": f"http://127.0.0.1:{settings.dagster_port}",
        }
    )
    purge_run_queue(settings)
    system = System(settings, home, env)
    try:
        yield system
    finally:
        system.stop()


def settings_env(settings: Settings) -> dict[str, str]:
    path = StackLayout(settings).env_path
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return dict(pairs)


def wait_for(predicate: object, timeout: float, what: str, interval: float = 0.5) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate() if callable(predicate) else predicate
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def as_json(response: requests.Response) -> dict[str, object]:
    return dict(json.loads(response.text))


class SystemPool:
    """One system at a time (they share ports and the e2e database), of the kind a test asks
    for: a test gets the same system as the test before it if that one is of its kind, and a
    fresh one otherwise, so tests pass alone and in any order."""

    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.settings = settings
        self.tmp = tmp
        self.kind: str | None = None
        self._stack = ExitStack()
        self.system: System | None = None

    def get(self, kind: str, *, sensor: bool) -> System:
        if self.system is not None and self.kind == kind:
            return self.system
        self.close()
        clear_change_log(self.settings)
        folder = self.tmp / f"{kind}-system-{len(list(self.tmp.glob(f'{kind}-system-*')))}"
        folder.mkdir(parents=True)
        self.system = self._stack.enter_context(running_system(self.settings, folder, sensor=sensor))
        self.kind = kind
        return self.system

    def close(self) -> None:
        self._stack.close()
        self._stack = ExitStack()
        self.system, self.kind = None, None
