"""What PostgreSQL spends on a piece of work: sessions opened per database, and CPU.

Sessions come from `pg_stat_database.sessions` (PostgreSQL 14+: every session ever
established to that database). CPU is that of every process of the stack's cluster: the
live ones from /proc, plus what the postmaster has reaped from backends that already exited
(its `cutime`/`cstime`), so short-lived connections are counted too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dicom_pipeline_dev.stack.layout import StackLayout
from dicom_pipeline_dev.stack.postgres import PostgresService
from dicom_pipeline_dev.stack.process import descendants

from dicom_pipeline.settings import Settings

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class PostgresReading:
    sessions: dict[str, int]
    cpu_seconds: float


def _cpu_of_cluster(postmaster: int) -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        if pid == postmaster:
            total += utime + stime + cutime + cstime
        elif ppid == postmaster:
            total += utime + stime
    return total / TICKS


def cpu_of_trees(pids: list[int]) -> float:
    """CPU seconds of these processes and everything below them (live, plus what each
    has reaped), so a window's figure leaves out the processes' start-up."""
    total = 0
    for pid in {p for root in pids for p in [root, *descendants(root)]}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])
    return total / TICKS


def read_postgres(settings: Settings) -> PostgresReading:
    postgres = PostgresService(StackLayout(settings))
    conn = postgres.superuser_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname, sessions FROM pg_stat_database WHERE datname IS NOT NULL")
            sessions = {name: int(count) for name, count in cur.fetchall()}
    finally:
        conn.close()
    # The cluster's folder is not always under the stack folder (as root it is in /var/tmp).
    postmaster = int((postgres.data / "postmaster.pid").read_text().split()[0])
    return PostgresReading(sessions, _cpu_of_cluster(postmaster))


def spent(before: PostgresReading, after: PostgresReading) -> tuple[dict[str, int], float]:
    """Sessions opened per database (this meter's own reading counts one, subtracted) and CPU."""
    sessions = {name: count - before.sessions.get(name, 0) for name, count in after.sessions.items()}
    sessions["postgres"] = sessions.get("postgres", 0) - 1
    return {name: count for name, count in sessions.items() if count}, after.cpu_seconds - before.cpu_seconds
