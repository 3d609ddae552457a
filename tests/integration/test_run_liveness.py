"""Run heartbeats and after-the-fact dead letters, on the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from dicom_pipeline.db.dead_letters import DeadLetterInput
from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.repository import record_orthanc_seen
from dicom_pipeline.db.run_heartbeats import beat, forget, last_beats
from dicom_pipeline.ingestion.dead_letter import write_dead_letter
from dicom_pipeline.run_liveness import Heartbeat
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings
from dicom_pipeline.staging_sweep import sweep_abandoned_staging
from tests.helpers import made_up_orthanc_id, query


def test_a_run_beats_while_it_runs_and_leaves_no_heartbeat_when_it_ends(stack_settings: Settings) -> None:
    runtime = get_runtime()
    run_id = f"test-{uuid.uuid4()}"
    with Heartbeat(lambda: runtime.engine, run_id=run_id, job_name="ingest_study", interval=0.2):
        deadline = time.monotonic() + 10
        beats: list[dt.datetime] = []
        while time.monotonic() < deadline and len(set(beats)) < 2:
            with transaction(runtime.engine) as session:
                _, found = last_beats(session, [run_id])
            beats.extend(found.values())
            time.sleep(0.1)
        assert len(set(beats)) >= 2, "the heartbeat did not move"
        assert query("SELECT job_name, pid FROM run_heartbeat WHERE run_id = :r", r=run_id)[0][0] == "ingest_study"
    assert query("SELECT count(*) FROM run_heartbeat WHERE run_id = :r", r=run_id) == [(0,)]


def _letter(orthanc_id: str, run_id: str) -> DeadLetterInput:
    return DeadLetterInput(
        correlation_id="liveness-test",
        trigger="webhook",
        study_instance_uid=None,
        orthanc_id=orthanc_id,
        instance=None,
        run_id=run_id,
        failed_op="run",
        error_type="RunWorkerLost",
        error_message="run worker stopped sending heartbeats",
        transient=True,
        attempts=1,
    )


def test_a_late_dead_letter_is_recorded_resolved_when_the_study_was_ingested_since_the_run_started(
    stack_settings: Settings,
) -> None:
    runtime = get_runtime()
    orthanc_id = made_up_orthanc_id()
    run_started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)

    open_id = write_dead_letter(runtime, _letter(orthanc_id, "run-before-ingest"), ingested_since=run_started)
    with transaction(runtime.engine) as session:  # a retry ingests the study
        record_orthanc_seen(session, orthanc_id, f"1.2.826.0.1.{uuid.uuid4().int}", "20261128T080000", stable=True)
    late_id = write_dead_letter(runtime, _letter(orthanc_id, "run-after-ingest"), ingested_since=run_started)
    later_failure = write_dead_letter(
        runtime, _letter(orthanc_id, "run-started-after"), ingested_since=dt.datetime.now(dt.UTC)
    )

    resolved = dict(
        query(
            "SELECT id, resolved_at IS NOT NULL FROM dead_letter WHERE id IN :ids",
            ids=(open_id, late_id, later_failure),
        )
    )
    assert resolved == {open_id: False, late_id: True, later_failure: False}


def test_a_worker_sweeps_the_scratch_folders_of_its_dead_runs_and_keeps_the_living(
    stack_settings: Settings, tmp_path: Path
) -> None:
    # Found by the 30-minute soak of 2026-12-04: a worker host killed as a run began left the
    # run's scratch folder; the backstop that settled the run runs in the daemon, elsewhere.
    runtime = get_runtime()
    dead, ended, alive, just_started = (str(uuid.uuid4()) for _ in range(4))
    with transaction(runtime.engine) as session:
        for run_id in (dead, alive):
            beat(session, run_id=run_id, job_name="ingest_study", hostname="test", pid=1)
        session.execute(
            text("UPDATE run_heartbeat SET beat_at = now() - interval '1 hour' WHERE run_id = :r"), {"r": dead}
        )
    long_ago = time.time() - 3600
    folders = {name: tmp_path / name for name in (dead, ended, alive, just_started, "outside-runs")}
    for name, folder in folders.items():
        (folder / "study-1").mkdir(parents=True)
        (folder / "study-1" / "partial.dcm").write_bytes(b"x")
        if name != just_started:  # a run whose first beat may not be written yet
            os.utime(folder, (long_ago, long_ago))

    try:
        removed = sweep_abandoned_staging(runtime.engine, tmp_path, dead_after=60.0)
    finally:
        with transaction(runtime.engine) as session:
            forget(session, [dead, alive])

    assert sorted(p.name for p in removed) == sorted([dead, ended])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive, just_started, "outside-runs"])
