"""Scenario 3: a run worker killed with SIGKILL during extract, through the real daemon.

Runs execute in Celery worker processes. Two ways one dies: a pool process alone (the OOM
killer picks it; Celery sees its child exit and records the task failed, and Dagster's run
monitoring reads that through the launcher's health check), or a whole worker host (every
process of it; its task stays STARTED in Redis, so only the dead_run_reaper's heartbeat
check can notice). In both: no file in the raw store, no row, and the instance's run retry
ingests the study once on a live worker; the killed attempt gets no dead letter, since its
retry settles the study (a letter would be false once the retry succeeds).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicom_pipeline_dev.stack.process import descendants, is_alive

from dicom_pipeline.settings import Settings
from tests.e2e.system import System, running_system, wait_for
from tests.helpers import KafkaTap, clear_change_log, query, seed_one

pytestmark = pytest.mark.e2e

TIMEOUT = 180  # a hang guard only
INSTANCES = 200  # 2 series x 100 x 512 KB: extract takes seconds, long enough to be caught in it


@pytest.fixture(scope="module")
def crash_system(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Daemon, webserver, webhook and two worker hosts; Orthanc's OnStableStudy call triggers."""
    clear_change_log(stack_settings)
    with running_system(stack_settings, Path(tmp_path_factory.mktemp("crash-system")), sensor=False) as system:
        # Fast liveness so the reaper's case takes seconds, not minutes.
        system.env["DICOM_PIPELINE_RUN_HEARTBEAT_SECONDS"] = "1"
        system.env["DICOM_PIPELINE_RUN_DEAD_AFTER_SECONDS"] = "6"
        system.start_dagster(workers=2)
        system.start_webhook()
        yield system


def test_worker_process_killed_mid_run_fails_through_the_launcher_and_is_retried(
    stack_settings: Settings, crash_system: System, events: KafkaTap
) -> None:
    run_id, orthanc_id, study_uid = _kill_during_extract(stack_settings, crash_system, whole_host=False)
    killed = time.monotonic()

    _run_status(crash_system, orthanc_id, run_id, {"FAILURE"})
    failed = time.monotonic()
    retry = _check_recovered(stack_settings, crash_system, events, run_id, orthanc_id, study_uid)
    assert retry["status"] == "SUCCESS"
    print(
        f"3a: run FAILURE {failed - killed:.1f}s after the kill, study ingested {time.monotonic() - killed:.1f}s after"
    )


def test_worker_host_lost_mid_run_is_reaped_and_retried_on_the_other_host(
    stack_settings: Settings, crash_system: System, events: KafkaTap
) -> None:
    run_id, orthanc_id, study_uid = _kill_during_extract(stack_settings, crash_system, whole_host=True)
    killed = time.monotonic()
    # Celery's task stays STARTED in Redis: nothing but the heartbeats can tell.
    assert _run_status(crash_system, orthanc_id, run_id, {"STARTED"})["status"] == "STARTED"

    _run_status(crash_system, orthanc_id, run_id, {"FAILURE"})
    failed = time.monotonic()
    retry = _check_recovered(stack_settings, crash_system, events, run_id, orthanc_id, study_uid)
    lost_worker = _tags(crash_system, orthanc_id, run_id)["dicom/worker"]
    assert _tags(crash_system, orthanc_id, str(retry["runId"]))["dicom/worker"] != lost_worker
    assert query("SELECT count(*) FROM run_heartbeat WHERE run_id = :run", run=run_id) == [(0,)]
    print(
        f"3b: run FAILURE {failed - killed:.1f}s after the kill, study ingested {time.monotonic() - killed:.1f}s after"
    )


def _kill_during_extract(settings: Settings, system: System, *, whole_host: bool) -> tuple[str, str, str]:
    seeded, spec = seed_one(settings, modality="CT", series=2, instances=INSTANCES // 2, size=512)

    def launched_run() -> str | None:
        rows = query(
            "SELECT run_id FROM ingestion_request WHERE orthanc_id = :id AND run_id IS NOT NULL", id=seeded.orthanc_id
        )
        return str(rows[0][0]) if rows else None

    run_id = str(wait_for(launched_run, TIMEOUT, "Orthanc's webhook call to become a run"))

    # Each worker host has its own scratch folder; the run stages under one of them.
    def staged() -> list[Path]:
        return list(system.home.glob(f"scratch-*/{run_id}/**/*.dcm"))

    wait_for(staged, TIMEOUT, "extract to start downloading", interval=0.05)
    rows = wait_for(
        lambda: query("SELECT pid FROM run_heartbeat WHERE run_id = :run", run=run_id), 10, "the run's heartbeat"
    )
    assert isinstance(rows, list)
    pool_process = int(rows[0][0])
    if whole_host:
        host = _parent(pool_process)  # the worker's main process
        doomed = [host, *descendants(host)]
        for name, process in list(system.processes.items()):
            if process.pid == host:
                system.processes.pop(name)
    else:
        doomed = [pool_process, *descendants(pool_process)]
    assert pool_process in doomed

    downloaded = len(staged())
    # All stopped first, then all killed: killed one by one, a survivor could see another die
    # (the pool process its instance readers) and fail the step itself, an op failure that is
    # (rightly) not retried, before its own kill; seen once in a run of the fault tests.
    for pid in doomed:
        _signal(pid, signal.SIGSTOP)
    for pid in doomed:
        _signal(pid, signal.SIGKILL)
    wait_for(lambda: not any(is_alive(pid) for pid in doomed), 30, "every killed process to be gone")
    assert 0 < downloaded < INSTANCES, f"the kill was not during extract ({downloaded} files staged)"
    print(f"killed {len(doomed)} process(es) with {downloaded}/{INSTANCES} files staged")

    # Nothing of the study reached the database or the raw store.
    assert query("SELECT count(*) FROM study WHERE study_instance_uid = :uid", uid=spec.study_uid) == [(0,)]
    assert _stored_files(settings, spec.study_uid) == []
    return run_id, seeded.orthanc_id, spec.study_uid


def _check_recovered(
    settings: Settings,
    system: System,
    events: KafkaTap,
    run_id: str,
    orthanc_id: str,
    study_uid: str,
) -> dict[str, object]:
    # The instance's run_retries re-executes a crashed run; the retry ingests the study.
    retry = _retry_of(system, orthanc_id, run_id)
    assert retry["status"] == "SUCCESS"
    # Dagster marked the killed attempt for a retry, so the backstop wrote no letter for it.
    killed = _run_status(system, orthanc_id, run_id, {"FAILURE"})
    assert {str(t["key"]): str(t["value"]) for t in killed["tags"]}.get("dagster/will_retry") == "true"  # type: ignore[attr-defined]
    assert query("SELECT count(*) FROM dead_letter WHERE orthanc_id = :id", id=orthanc_id) == [(0,)]
    versions = query(
        "SELECT v.version FROM study_version v JOIN study s ON s.id = v.study_id WHERE s.study_instance_uid = :uid",
        uid=study_uid,
    )
    assert versions == [(1,)]
    assert query(
        "SELECT count(*) FROM instance i JOIN study s ON s.id = i.study_id WHERE s.study_instance_uid = :uid",
        uid=study_uid,
    ) == [(INSTANCES,)]
    assert len(_stored_files(settings, study_uid)) == INSTANCES
    assert len(events.read_all(key=study_uid, settled=lambda: system.settled(orthanc_id, study_uid))) == 1
    assert wait_for(
        lambda: query("SELECT status FROM ingestion_request WHERE orthanc_id = :id", id=orthanc_id) == [("succeeded",)],
        TIMEOUT,
        "the webhook request to read succeeded",
    )
    return retry


def _retry_of(system: System, orthanc_id: str, run_id: str) -> dict[str, object]:
    def finished_retry() -> dict[str, object] | None:
        for run in system.study_runs(orthanc_id):
            if run["parentRunId"] == run_id and run["status"] in ("SUCCESS", "FAILURE"):
                return run
        return None

    try:
        retry = wait_for(finished_retry, TIMEOUT, f"the retry of run {run_id} to finish")
    except AssertionError as timed_out:
        # Why Dagster did not retry it (dagster/will_retry, dagster/failure_reason) survives CI.
        raise AssertionError(f"{timed_out}; the failed run's tags: {_tags(system, orthanc_id, run_id)}") from None
    assert isinstance(retry, dict)
    return retry


def _run_status(system: System, orthanc_id: str, run_id: str, wanted: set[str]) -> dict[str, object]:
    def current() -> dict[str, object] | None:
        for run in system.study_runs(orthanc_id):
            if run["runId"] == run_id and run["status"] in wanted:
                return run
        return None

    run = wait_for(current, TIMEOUT, f"run {run_id} to be {wanted}")
    assert isinstance(run, dict)
    return run


def _stored_files(settings: Settings, study_uid: str) -> list[Path]:
    root = Path(settings.storage_url.removeprefix("file://")) / study_uid
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _tags(system: System, orthanc_id: str, run_id: str) -> dict[str, str]:
    for run in system.study_runs(orthanc_id):
        if run["runId"] == run_id:
            return {str(t["key"]): str(t["value"]) for t in run["tags"]}  # type: ignore[attr-defined]
    raise AssertionError(f"run {run_id} not found")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
