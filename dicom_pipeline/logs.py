"""One log format per destination: a line people read in a terminal, JSON lines otherwise.

Every line carries its time, level, process, logger, the correlation id of the work it
belongs to, and the message. `DICOM_PIPELINE_LOG_FORMAT` chooses: `auto` (the default: the
console format when stderr is a terminal, JSON otherwise), `console` or `json`. Compose
and anything that collects logs get JSON.

One handler, on the root logger, writes every line of a process: the project's loggers,
Celery's, uvicorn's and Dagster's own propagate to it, so no line is written twice.
Dagster's daemon and webserver configure their logging themselves after any code of ours
could run; `make dev` starts them with `--log-format json` and shows their lines (and every
other process's) through `dicom-pipeline logs`, which renders the same console format.

Log identifiers (UIDs, Orthanc ids, run ids), never patient names or birth dates.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any, Literal

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)

LogFormat = Literal["auto", "console", "json"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# Loggers that libraries give handlers of their own; theirs are removed so that every line
# reaches the one root handler exactly once.
_TAKEN_OVER = ("dagster", "dagster-webserver", "dagit", "uvicorn", "uvicorn.error", "uvicorn.access", "celery")
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50, "exception": 40}
_COLOURS = {"debug": "\033[2m", "warning": "\033[33m", "error": "\033[31m", "critical": "\033[1;31m"}
_RESET = "\033[0m"
_FIELDS = {"ts", "level", "process", "logger", "message", "correlation_id", "exception"}
# Set on every record of the project's loggers (by the record factory configure_logging
# installs): Dagster passes it on when it re-logs a record it captured into a run's log, so
# the runs' console logger (defs/run_log.py) can leave that line to the root handler.
CAPTURED_FROM = "pipeline_logger"
# Record attributes that are not a line's fields: Dagster's metadata of a record it
# captured (large, not JSON), uvicorn's coloured copy of its message.
_NOT_EXTRAS = {"dagster_meta", "color_message", CAPTURED_FROM}
# On the console, extras are for telling lines apart (ids, counts): long values are left
# to the JSON line (Celery's `data` holds a whole task message).
_CONSOLE_EXTRA_MAX = 120

_process_name: str | None = None


def _utc(created: float) -> str:
    return dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_entry(record: logging.LogRecord) -> dict[str, Any]:
    """A record as the fields of a line (both formats write exactly these)."""
    meta = getattr(record, "dagster_meta", None)
    entry: dict[str, Any] = {
        "ts": _utc(record.created),
        "level": record.levelname.lower(),
        "process": _process_name,
        "logger": record.name,
        # A record Dagster captured into a run's log (python_logs) has its message rewritten
        # with the run's job, id and step in front: the line shows what the code said.
        "message": meta["orig_message"] if isinstance(meta, dict) and "orig_message" in meta else record.getMessage(),
        "correlation_id": getattr(record, "correlation_id", None) or correlation_id_var.get(),
    }
    # An `extra` never replaces the line's own fields (a "level" extra once did).
    entry.update(
        {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k not in entry and k not in _NOT_EXTRAS}
    )
    if record.exc_info:
        entry["exception"] = logging.Formatter().formatException(record.exc_info)
    return entry


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(log_entry(record), default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    def __init__(self, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        entry = log_entry(record)
        entry["process"] = entry["process"] or record.processName
        return render_console(entry, colour=self.colour)


def render_console(entry: Mapping[str, Any], *, colour: bool = False) -> str:
    """`12:04:05.123 INFO  worker  [corr-id] logger: message key=value`, the time local."""
    level = str(entry.get("level") or "info").lower()
    when = _local_time(entry.get("ts"))
    correlation = f" [{entry['correlation_id']}]" if entry.get("correlation_id") else ""
    extras = "".join(
        f" {k}={v}"
        for k, v in entry.items()
        if k not in _FIELDS
        and k not in _NOT_EXTRAS
        and isinstance(v, str | int | float)
        and v != ""
        and len(str(v)) <= _CONSOLE_EXTRA_MAX
    )
    line = (
        f"{when} {level.upper():<7} {entry.get('process') or '-'!s:<10}{correlation} "
        f"{entry.get('logger') or '-'}: {entry.get('message', '')}{extras}"
    )
    if entry.get("exception"):
        line += "\n" + str(entry["exception"])
    if colour and level in _COLOURS:
        line = f"{_COLOURS[level]}{line}{_RESET}"
    return line


def _local_time(ts: object) -> str:
    try:
        when = dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return f"{str(ts)[:12]:<12}"
    if when.tzinfo is not None:
        when = when.astimezone()
    return when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def formatter_for(fmt: LogFormat, stream: IO[str]) -> logging.Formatter:
    if fmt == "json" or (fmt == "auto" and not stream.isatty()):
        return JsonFormatter()
    return ConsoleFormatter(colour=stream.isatty())


_configured = False


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto", *, process: str | None = None) -> None:
    """Every line of this process through one handler on stderr; idempotent, except that a
    library which installed handlers since (Dagster's code server does) loses them again."""
    global _configured, _process_name
    if process is not None:
        _process_name = process
    root = logging.getLogger()
    for name in _TAKEN_OVER:
        library = logging.getLogger(name)
        if library.handlers:
            # Its lines go to the root handler instead; a logger its library turned off
            # (uvicorn's access log without --access-log: no handler, no propagation) stays off.
            for handler in list(library.handlers):
                library.removeHandler(handler)
            library.propagate = True
    for name in ("dicom_pipeline", "webhook"):
        logging.getLogger(name).setLevel(level.upper())
    if _configured:
        return
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(fmt, sys.stderr))
    root.addHandler(handler)
    # Libraries that set no level of their own (urllib3 logs every connection, alembic each
    # migration check) speak from WARNING up; Dagster, Celery and uvicorn set their loggers'
    # levels themselves.
    root.setLevel(logging.WARNING)
    # Python warnings (a library's DeprecationWarning...) as log lines of the same format.
    logging.captureWarnings(True)
    base_factory = logging.getLogRecordFactory()

    def marked(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base_factory(*args, **kwargs)
        # Dagster's log manager makes records with no name at all.
        if isinstance(record.name, str) and record.name.startswith(("dicom_pipeline", "webhook")):
            setattr(record, CAPTURED_FROM, record.name)
        return record

    logging.setLogRecordFactory(marked)
    _configured = True


# -- `dicom-pipeline logs`: other processes' lines in the console format --

# Dagster's daemon reports every sensor evaluation at INFO, twice, even when the sensor
# found nothing (every 5 s for the change feed): below the console's level, those say
# nothing a person watching needs. Shown with `--level debug`.
_QUIET = re.compile(
    r"^(Checking for new runs for sensor: |No run requests returned for |Sensor .* skipped: |"
    r"Not checking for sensor)"
)
# librdkafka's own lines on stderr: %<syslog level>|<time>|<facility>|<client>| <message>
_RDKAFKA = re.compile(r"^%(?P<sev>\d)\|(?P<ts>[\d.]+)\|(?P<fac>[^|]*)\|(?P<name>[^|]*)\| ?(?P<msg>.*)$")
_SYSLOG = {0: "critical", 1: "critical", 2: "critical", 3: "error", 4: "warning", 5: "info", 6: "info", 7: "debug"}
# Dagster's own console format (coloredlogs), which a sensor's `context.log` and a code
# server starting up write whatever the process's format: "<date> <time> <zone> - <logger>
# - <LEVEL> - <message>".
_DAGSTER_CONSOLE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?: (?P<zone>[+-]\d{4}))? - (?P<logger>\S+) - "
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) - (?P<msg>.*)$"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_line(line: str, process: str) -> dict[str, Any] | None:
    """A line of another process as the fields of ours: our JSON, Dagster's JSON
    (`--log-format json`: event, level, logger, timestamp) or librdkafka's; None for
    anything else (a traceback's lines, a program's own output)."""
    text = _ANSI.sub("", line.rstrip("\n"))
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None
        entry = dict(raw)
        if "event" in entry and "message" not in entry:  # Dagster's structlog
            entry["message"] = entry.pop("event")
            entry["ts"] = entry.pop("timestamp", None)
        entry["level"] = str(entry.get("level") or "info").lower()
        entry["process"] = entry.get("process") or process
        return entry
    match = _DAGSTER_CONSOLE.match(text)
    if match:
        zone = match["zone"] or "+0000"
        return {
            "ts": dt.datetime.strptime(f"{match['ts']} {zone}", "%Y-%m-%d %H:%M:%S %z").isoformat(),
            "level": match["level"].lower(),
            "process": process,
            "logger": match["logger"],
            "message": match["msg"],
        }
    match = _RDKAFKA.match(text)
    if match:
        return {
            "ts": _utc(float(match["ts"])),
            "level": _SYSLOG.get(int(match["sev"]), "info"),
            "process": process,
            "logger": f"rdkafka.{match['fac']}",
            "message": f"{match['name']}: {match['msg']}",
        }
    return None


def render_lines(lines: Iterable[str], process: str, *, level: str = "info", colour: bool = False) -> Iterator[str]:
    """Each line of another process's output in the console format, those below `level`
    left out; a line that is not a log line (a traceback) is shown as it came."""
    threshold = _LEVELS.get(level.lower(), 20)
    for line in lines:
        entry = parse_line(line, process)
        if entry is None:
            if line.strip():
                yield f"{'':12} {'':7} {process:<10} {line.rstrip()}"
            continue
        if _QUIET.match(str(entry.get("message", ""))) and entry["level"] == "info":
            entry["level"] = "debug"
        if _LEVELS.get(entry["level"], 20) >= threshold:
            yield render_console(entry, colour=colour)


@contextmanager
def bound_correlation_id(correlation_id: str | None) -> Iterator[None]:
    token = correlation_id_var.set(correlation_id)
    try:
        yield
    finally:
        correlation_id_var.reset(token)


def stderr_is_terminal() -> bool:
    return os.isatty(sys.stderr.fileno()) if hasattr(sys.stderr, "fileno") else False
