"""Noticing run workers that died without a word (SIGKILL, the OOM killer, a lost host).

Dagster's run monitoring can check a run worker's health only for launchers that support
it (Kubernetes, Docker, ECS). With the default launcher only the code server that started
the worker notices its death, and only while it lives itself: a worker lost together with
its code server (a container or host gone) leaves its run STARTED forever, the study
neither ingested nor dead-lettered, its per-study concurrency slot taken. So each run of
this code location beats while it runs (`Heartbeat`, held by the ingestion resource), and
the `dead_run_reaper` sensor fails the runs that went silent (`DeadRunDetector`).

A run is declared dead only when two reaper ticks, at least one heartbeat interval
apart, saw the same last sign of life older than the limit. A live worker beats between
the two; a worker that could not reach PostgreSQL for a while (the reaper could not
either) beats again as soon as it can, before the second look.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

from sqlalchemy import Engine

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.run_heartbeats import beat, forget

log = logging.getLogger(__name__)


class Heartbeat:
    """A background thread that records, every `interval` seconds, that this run is alive."""

    def __init__(self, engine: Callable[[], Engine], *, run_id: str, job_name: str, interval: float) -> None:
        self._engine = engine
        self.run_id = run_id
        self.job_name = job_name
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_stopped, name=f"heartbeat-{run_id[:8]}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        # The run ends here (Dagster records how); a missing row is what a finished run looks like.
        try:
            with transaction(self._engine()) as session:
                forget(session, [self.run_id])
        except Exception as exc:  # noqa: BLE001 - a leftover row is removed by the reaper
            log.warning("could not remove the run's heartbeat", extra={"run_id": self.run_id, "error": str(exc)})

    def _beat_until_stopped(self) -> None:
        host, pid = socket.gethostname(), os.getpid()
        failing = False
        while True:
            try:
                with transaction(self._engine()) as session:
                    beat(session, run_id=self.run_id, job_name=self.job_name, hostname=host, pid=pid)
                failing = False
            except Exception as exc:  # noqa: BLE001 - never let liveness bookkeeping fail the run
                if not failing:
                    log.warning("run heartbeat not recorded", extra={"run_id": self.run_id, "error": str(exc)})
                failing = True
            if self._stop.wait(self.interval):
                return


@dataclass(frozen=True)
class StartedRun:
    run_id: str
    started_at: dt.datetime | None


@dataclass(frozen=True)
class DeadRunDetector:
    """Decides, tick by tick, which STARTED runs have a dead worker. Pure: no I/O."""

    dead_after_seconds: float

    def silent(self, runs: list[StartedRun], beats: Mapping[str, dt.datetime], now: dt.datetime) -> dict[str, str]:
        """Runs whose last sign of life (last beat, else start) is older than the limit."""
        silent: dict[str, str] = {}
        for run in runs:
            last = beats.get(run.run_id) or run.started_at
            if last is not None and (now - last).total_seconds() > self.dead_after_seconds:
                silent[run.run_id] = last.isoformat()
        return silent

    def judge(self, silent: Mapping[str, str], seen_before: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """(dead runs, what to remember for the next tick)."""
        dead = [run_id for run_id, last in silent.items() if seen_before.get(run_id) == last]
        remember = {run_id: last for run_id, last in silent.items() if run_id not in dead}
        return dead, remember
