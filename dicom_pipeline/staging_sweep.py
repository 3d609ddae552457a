"""Removing the scratch folders of runs whose worker died.

A run's scratch folder (partial downloads, under STAGING_DIR/<run id>) is removed by the
run itself when it ends. A worker killed mid-run cannot, and the run-failure backstop that
settles the dead run runs in the daemon, which cannot reach another host's disk. So every
worker sweeps its own staging root: a folder whose run has no heartbeat newer than
RUN_DEAD_AFTER_SECONDS (the reaper's own test of a dead run) and that has not changed for as
long goes. Found by the 30-minute soak of 2026-12-04 (a worker host killed as a run began).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.run_heartbeats import last_beats
from dicom_pipeline.run_liveness import DeadRunDetector, StartedRun
from dicom_pipeline.settings import Settings

log = logging.getLogger(__name__)


def sweep_abandoned_staging(engine: Engine, root: Path, *, dead_after: float) -> list[Path]:
    """Removes, and returns, the folders under `root` of runs that are no longer alive."""
    if not root.is_dir():
        return []
    quiet_since = time.time() - dead_after
    candidates = {
        folder.name: folder
        for folder in root.iterdir()
        if folder.is_dir() and _is_run_id(folder.name) and folder.stat().st_mtime <= quiet_since
    }
    if not candidates:
        return []
    with transaction(engine) as session:
        now, beats = last_beats(session, list(candidates))
    # Silent by the reaper's own measure; a run with no beat at all has ended (its beat is
    # forgotten then) or never began, and its folder is as old as the limit.
    silent = DeadRunDetector(dead_after).silent([StartedRun(run_id, None) for run_id in candidates], beats, now)
    removed = []
    for run_id, folder in candidates.items():
        if run_id not in beats or run_id in silent:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            log.info("removed the scratch folder of run %s (its worker is gone)", run_id, extra={"run_id": run_id})
    return removed


def start_sweeping(settings: Settings) -> threading.Thread:
    """A daemon thread sweeping this worker's staging root every RUN_DEAD_AFTER_SECONDS.

    Its engine holds no pooled connection (NullPool): the Celery main process that runs it
    forks replacement pool processes, which must not inherit open connections."""
    engine = create_engine(settings.database_url.get_secret_value(), poolclass=NullPool)
    root = settings.staging_dir.resolve()
    interval = settings.run_dead_after_seconds

    def loop() -> None:
        while True:
            try:
                sweep_abandoned_staging(engine, root, dead_after=interval)
            except Exception:  # PostgreSQL down: the next sweep tries again
                log.warning("staging sweep failed; trying again in %.0f s", interval, exc_info=True)
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="staging-sweep", daemon=True)
    thread.start()
    return thread


def _is_run_id(name: str) -> bool:
    try:
        uuid.UUID(name)
    except ValueError:
        return False
    return True
