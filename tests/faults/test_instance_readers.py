"""Instance reader processes: killed with work in flight, and outliving their owner.

Against the real Orthanc, PostgreSQL and Kafka of the stack. The readers are the processes
that download and parse a study's instances (dicom_pipeline.ingestion.readers).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from dicom_pipeline_dev.stack.process import is_alive

from dicom_pipeline.ingestion.study import IngestStudy, ingest_study
from dicom_pipeline.runtime import Runtime
from dicom_pipeline.settings import Settings
from tests.helpers import query, seed_one, wait_for_stable

pytestmark = pytest.mark.integration


def test_a_reader_killed_mid_study_costs_a_retry_not_the_study_nor_a_duplicate(
    stack_settings: Settings, tmp_path: Path
) -> None:
    seeded, spec = seed_one(stack_settings, series=2, instances=150, size=256)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    settings = stack_settings.model_copy(update={"reader_processes": 2, "staging_dir": tmp_path})
    runtime = Runtime(settings)
    readers = runtime.instance_readers
    assert readers is not None
    readers.start()
    first = readers.pids()
    assert len(first) == 2

    victim = first[0]
    killed = threading.Event()

    def kill_when_in_flight() -> None:
        # Mid-study: some instances staged, most not yet.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            staged = sum(1 for _ in tmp_path.rglob("*.dcm"))
            if 20 <= staged < 250:
                os.kill(victim, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_when_in_flight)
    killer.start()
    try:
        result = ingest_study(runtime, IngestStudy(seeded.orthanc_id, "test", str(uuid.uuid4())))
    finally:
        killer.join()
        readers.close()

    assert killed.is_set(), "the reader was not killed while the study was being read"
    assert result.status == "created", result.summary()
    assert result.events_published == 1
    # Started afresh after the loss: the victim is not among the readers that finished.
    rows = query(
        "SELECT v.version, s.number_of_instances FROM study_version v JOIN study s ON s.id = v.study_id "
        "WHERE s.study_instance_uid = :uid",
        uid=spec.study_uid,
    )
    assert rows == [(1, 300)], "one version holding every instance: nothing lost, nothing twice"
    assert not query("SELECT 1 FROM dead_letter WHERE orthanc_id = :id", id=seeded.orthanc_id)


OWNER = """
import multiprocessing, sys, time
from dicom_pipeline.ingestion.readers import InstanceReaders
from dicom_pipeline.settings import Settings

def own(pipe):
    readers = InstanceReaders(Settings(reader_processes=2))
    readers.start()
    pipe.send(readers.pids())
    time.sleep(600)

if __name__ == "__main__":
    receive, send = multiprocessing.Pipe(duplex=False)
    # Daemonic, as Celery's pool processes are: multiprocessing refuses them children.
    owner = multiprocessing.Process(target=own, args=(send,), daemon=True)
    owner.start()
    print(owner.pid, *receive.recv(), flush=True)
    owner.join()
"""


def test_readers_start_from_a_daemonic_process_and_end_when_it_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        owner, *readers = (int(pid) for pid in process.stdout.readline().split())
        assert len(readers) == 2 and all(is_alive(pid) for pid in readers)

        os.kill(owner, signal.SIGKILL)

        deadline = time.monotonic() + 10
        while any(is_alive(pid) for pid in readers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in readers if is_alive(pid)], "a reader outlived its owner"
    finally:
        process.kill()
        process.wait()
