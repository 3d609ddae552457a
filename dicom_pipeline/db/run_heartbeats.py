"""Run heartbeats: written by a run's worker, read by the dead-run reaper."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dicom_pipeline.db.models import RunHeartbeat


def beat(session: Session, *, run_id: str, job_name: str, hostname: str, pid: int) -> None:
    """Record that the run's worker is alive now (by the database's clock, like the reader)."""
    statement = insert(RunHeartbeat).values(run_id=run_id, job_name=job_name, hostname=hostname, pid=pid)
    session.execute(statement.on_conflict_do_update(index_elements=["run_id"], set_={"beat_at": func.now()}))


def forget(session: Session, run_ids: Collection[str]) -> None:
    if run_ids:
        session.execute(delete(RunHeartbeat).where(RunHeartbeat.run_id.in_(list(run_ids))))


def last_beats(session: Session, run_ids: Collection[str]) -> tuple[dt.datetime, dict[str, dt.datetime]]:
    """The database's current time and the last beat of each given run that has one."""
    now = session.scalar(select(func.now()))
    assert now is not None
    if not run_ids:
        return now, {}
    rows = session.execute(
        select(RunHeartbeat.run_id, RunHeartbeat.beat_at).where(RunHeartbeat.run_id.in_(list(run_ids)))
    )
    return now, {str(run_id): beat_at for run_id, beat_at in rows}
