"""Log lines: the JSON line's own fields, the console format, other processes' lines rendered."""

from __future__ import annotations

import json
import logging
import re

import pytest

from dicom_pipeline import logs
from dicom_pipeline.logs import ConsoleFormatter, JsonFormatter, render_lines


def test_an_extra_named_like_a_field_of_the_line_does_not_replace_it() -> None:
    record = logging.LogRecord("webhook.ingestion", logging.INFO, __file__, 1, "deletion notice accepted", None, None)
    record.__dict__.update({"level": "Study", "message": "spoofed", "orthanc_id": "abc"})

    line = json.loads(JsonFormatter().format(record))

    assert (line["level"], line["message"], line["orthanc_id"]) == ("info", "deletion notice accepted", "abc")


def test_the_console_line_has_time_level_process_correlation_id_logger_and_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A process that named itself (configure_logging(process=...): the webhook's tests do)
    # shows that name; one that did not, Python's process name.
    monkeypatch.setattr(logs, "_process_name", None)
    record = logging.LogRecord("dicom_pipeline.ingestion", logging.WARNING, __file__, 1, "study %s late", ("x",), None)
    record.__dict__.update({"correlation_id": "corr-1", "study_uid": "1.2.3", "empty": None})

    line = ConsoleFormatter().format(record)

    when, level, process, rest = line.split(maxsplit=3)
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", when)
    assert (level, process) == ("WARNING", record.processName)
    assert rest == "[corr-1] dicom_pipeline.ingestion: study x late study_uid=1.2.3"


def test_other_processes_lines_render_in_the_same_format_and_idle_sensor_ticks_drop_to_debug() -> None:
    dagster = {"level": "info", "logger": "dagster.daemon.SensorDaemon", "timestamp": "2026-12-04T02:00:00.5Z"}
    ours = {"ts": "2026-12-04T02:00:01.000Z", "level": "error", "process": "worker", "logger": "dicom_pipeline.x"}
    lines = [
        json.dumps({**dagster, "event": "Checking for new runs for sensor: orthanc_change_feed"}),
        json.dumps({**dagster, "event": "Run 1 launched"}),
        "%4|1796352775.294|GETPID|rdkafka#producer-1| [thrd:main]: Failed to acquire idempotence PID\n",
        "Traceback (most recent call last):\n",
        json.dumps({**ours, "message": "study failed", "correlation_id": "c-2"}),
    ]

    shown = list(render_lines(lines, "daemon"))
    everything = list(render_lines(lines, "daemon", level="debug"))

    assert len(shown) == 4 and len(everything) == 5, "only the idle tick is left out at info"
    assert shown[0].split()[1:] == ["INFO", "daemon", "dagster.daemon.SensorDaemon:", "Run", "1", "launched"]
    assert shown[1].split()[1:4] == ["WARNING", "daemon", "rdkafka.GETPID:"]
    assert shown[2].split() == ["daemon", "Traceback", "(most", "recent", "call", "last):"]
    assert shown[3].split()[1:5] == ["ERROR", "worker", "[c-2]", "dicom_pipeline.x:"]
    assert everything[0].split()[1] == "DEBUG"
