"""Starting a detached service: an early exit is reported at once, with its status and log."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from dicom_pipeline_dev.stack.errors import StackError
from dicom_pipeline_dev.stack.process import PidFile, start_detached, wait_until


def test_a_service_that_exits_while_starting_fails_at_once_naming_its_status(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    pid_file = PidFile(tmp_path / "svc.pid", "-c")
    process = start_detached([sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"], pid_file, log)

    with pytest.raises(StackError) as raised:
        wait_until(lambda: False, "Svc", 60, log, process)

    message = str(raised.value)
    assert "Svc exited with status 3" in message
    assert "bad config" in message
    assert pid_file.read() == process.pid


def test_a_silent_service_times_out_saying_its_log_is_empty(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    process = start_detached(
        [sys.executable, "-c", "import time; time.sleep(30)"], PidFile(tmp_path / "svc.pid", "-c"), log
    )
    try:
        with pytest.raises(StackError, match=r"Svc did not answer within 1s \| .*svc\.log is empty"):
            wait_until(lambda: False, "Svc", 1, log, process)
    finally:
        process.kill()
        process.wait()


def test_waiting_returns_as_soon_as_the_service_answers(tmp_path: Path) -> None:
    answers = iter([False, False, True])
    wait_until(lambda: next(answers), "Svc", 60)
