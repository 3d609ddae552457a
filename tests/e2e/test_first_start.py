"""`make dev` as a newcomer sees it: one log format, no line twice, no warning, and each demo
study ingested by exactly one ingest_study run that publishes its event (#22)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy
from dicom_pipeline_dev.seed.runner import orthanc_client
from dicom_pipeline_dev.stack.layout import StackLayout

from dicom_pipeline.ingestion.reconcile import CURSOR_NAME, DELETION_CHECK_NAME
from dicom_pipeline.settings import Settings
from tests.e2e.system import REPO, fresh_dagster_database, purge_run_queue, settings_env, wait_for
from tests.helpers import KafkaTap, clear_change_log, execute, outbox_published, query, unique_seed

pytestmark = pytest.mark.e2e

# The script's own lines (the stack's report, the banner); everything else must be a log line.
SCRIPT_LINES = re.compile(
    r"^(\S+: (started|running|already running|stopped).*|demo studies sent to Orthanc.*|"
    r"\s+(Dagster UI|Webhook API|Orthanc|Ctrl-C) .*|\s*)$"
)
FIRST_MINUTE = 180  # a hang guard: the runs land in seconds; the reconcile sensor's second tick at ~60 s


@dataclass
class DevRun:
    process: subprocess.Popen[bytes]
    output: Path
    dagster_db: str


@pytest.fixture()
def dev_run(stack_settings: Settings, tmp_path: Path) -> Iterator[DevRun]:
    """scripts/dev.sh on a fresh Dagster instance, as on a first `make dev`, its output in a file
    (not a terminal: JSON lines). The pipeline's own database is the suite's; its change-log
    cursor is set to now, so the second reconcile pass reads only what this start sent."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    # Other tests' studies are in Orthanc (bad ones among them); a first start here would
    # follow its change log from the start and dead-letter those again. As on a clean
    # machine, the log holds only what this start sends.
    clear_change_log(stack_settings)
    with orthanc_client(stack_settings) as client:
        last = int(client.get("/changes", params={"last": ""}).json()["Last"])
    for name, seq in ((CURSOR_NAME, last), (DELETION_CHECK_NAME, 0)):
        execute(
            "INSERT INTO reconcile_cursor (name, seq, updated_at) VALUES (:n, :s, now()) "
            "ON CONFLICT (name) DO UPDATE SET seq = :s, updated_at = now()",
            n=name,
            s=seq,
        )
    purge_run_queue(stack_settings)
    StackLayout(stack_settings).root.joinpath("demo-studies.json").unlink(missing_ok=True)
    dagster_db = fresh_dagster_database(stack_settings)
    env = {
        **os.environ,
        **settings_env(stack_settings),
        "DAGSTER_HOME": str(home),
        "DICOM_PIPELINE_DAGSTER_DATABASE_URL": dagster_db,
        "DICOM_PIPELINE_DAGSTER_PORT": str(stack_settings.dagster_port),
        "DICOM_PIPELINE_WEBHOOK_PORT": str(stack_settings.webhook_port),
        "DEV_SEED": str(unique_seed()),
        "VENV": str(Path(sys.executable).parent.parent),
    }
    env.pop("DICOM_PIPELINE_LOG_FORMAT", None)
    output = tmp_path / "dev.log"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            ["bash", "scripts/dev.sh"], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield DevRun(process, output, dagster_db)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _reconcile_ticks(dagster_db: str) -> int:
    rows = query_dagster(dagster_db, "SELECT count(*) FROM job_ticks WHERE tick_body LIKE '%reconcile_sensor%'")
    return int(str(rows[0][0]))


def query_dagster(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sqlalchemy.text(sql))]
    finally:
        engine.dispose()


def test_a_first_make_dev_shows_one_format_no_warning_and_one_run_per_demo_study(
    stack_settings: Settings, events: KafkaTap, dev_run: DevRun
) -> None:
    # `events` before `dev_run`: the tap is open before the first event can be sent.
    process, output, dagster_db = dev_run.process, dev_run.output, dev_run.dagster_db
    demo = StackLayout(stack_settings).root / "demo-studies.json"
    studies = wait_for(lambda: _demo_studies(demo), FIRST_MINUTE, "the demo studies")
    assert isinstance(studies, list) and len(studies) == 4
    uids = [str(s["study_instance_uid"]) for s in studies]

    def ingested() -> bool:
        return all(_versions(uid) == [1] for uid in uids)

    wait_for(ingested, FIRST_MINUTE, "the demo studies' first versions")
    # The reconcile sensor's second tick (the first only lets the change feed go first) is
    # the one that, before #22, ingested the studies again in bulk.
    wait_for(lambda: _reconcile_ticks(dagster_db) >= 2, FIRST_MINUTE, "two reconcile sensor ticks")

    runs = query_dagster(
        dagster_db,
        "SELECT r.pipeline_name, t.value, r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
        "WHERE t.key = 'dicom/study_uid'",
    )
    demo_runs = Counter((name, uid) for name, uid, _status in runs if uid in uids)
    assert demo_runs == Counter({("ingest_study", uid): 1 for uid in uids}), runs
    assert all(status == "SUCCESS" for _n, uid, status in runs if uid in uids), runs
    assert not [r for r in query_dagster(dagster_db, "SELECT pipeline_name FROM runs") if r[0] == "reconcile"]
    # Everything on the topic since the start: every run has ended, so once the outbox has
    # sent what they wrote, nothing more comes.
    everything = events.read_all(settled=lambda: all(outbox_published(uid) for uid in uids))
    published = Counter((m.key, m.value["event_type"]) for m in everything)
    assert {uid: published[(uid, "study.created")] for uid in uids} == dict.fromkeys(uids, 1), published
    assert not [key for key, kind in published if key in uids and kind != "study.created"], published

    # Ctrl-C, as in a terminal: the script and what shows its processes' lines get SIGINT.
    os.killpg(process.pid, signal.SIGINT)
    process.wait(60)

    def worker_stopped() -> bool:
        # What shows the worker's lines may still be writing its last ones as the script exits.
        text = output.read_text(errors="replace")
        return "shutdown on SIG" in text or "worker: Warm shutdown" in text  # (the second: Celery's own)

    wait_for(worker_stopped, 30, "the worker's shutdown line")
    lines = output.read_text(errors="replace").splitlines()
    entries, strays = [], []
    for number, line in enumerate(lines):
        try:
            entries.append(json.loads(line))
        except ValueError:
            if not SCRIPT_LINES.match(line):
                # With the lines before it: they say which process wrote it.
                strays.append("\n".join([*lines[max(0, number - 3) : number], f">> {line}"]))
    assert not strays, "lines in no log format:\n" + "\n---\n".join(strays[:10])
    assert entries and all({"level", "logger"} <= e.keys() for e in entries)
    loud = [e for e in entries if str(e["level"]).lower() in ("warning", "error", "critical", "exception")]
    assert not loud, "warnings on a clean start:\n" + "\n".join(json.dumps(e) for e in loud[:20])
    twice = [line for line, n in Counter(line for line in lines if line.startswith("{")).items() if n > 1]
    assert not twice, "lines written twice:\n" + "\n".join(twice[:10])
    # A line written again by another logger differs from the first as a whole: Dagster's
    # default console logger once re-wrote each project line of a run into the worker's
    # stdout ("celery.redirected: <date> - dagster - INFO - ingest_study - <run> - ...").
    redirected = [e for e in entries if e["logger"] == "celery.redirected"]
    assert not redirected, "a process's stdout in the log:\n" + "\n".join(json.dumps(e) for e in redirected[:5])
    # The worker's last line is a log line too (Celery printed "worker: Warm shutdown" raw).
    assert any(e["logger"] == "dicom_pipeline.run_worker" and "shutdown" in e["message"] for e in entries), lines[-20:]
    project = [e for e in entries if str(e["logger"]).startswith("dicom_pipeline")]
    assert any(e["message"] == "extracted study" for e in project), "the runs' own lines are missing"
    echoed = [
        (e["message"], other["logger"])
        for e in project
        for other in entries
        if other is not e and other["logger"] != e["logger"] and e["message"] in str(other.get("message", ""))
    ]
    assert not echoed, f"project lines written again by another logger: {echoed[:5]}"


def _demo_studies(path: Path) -> list[dict[str, object]] | None:
    """The studies dev.sh sent, once it has written all of them."""
    try:
        studies = json.loads(path.read_text())["studies"]
    except (OSError, ValueError, KeyError):
        return None
    return list(studies)


def _versions(uid: str) -> list[int]:
    return [
        int(r[0])
        for r in query(
            "SELECT v.version FROM study_version v JOIN study s ON s.id = v.study_id "
            "WHERE s.study_instance_uid = :uid ORDER BY v.version",
            uid=uid,
        )
    ]
