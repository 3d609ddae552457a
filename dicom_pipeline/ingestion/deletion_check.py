"""When the periodic reconciliation looks for deletions nobody announced.

Orthanc's change log keeps nothing of a deleted resource (its changes go with it), so a
deletion whose Lua notice was lost (the webhook or PostgreSQL down, Orthanc killed before
the call) leaves no trace to read. What it does leave is a count: Orthanc then holds fewer
studies, or fewer instances, than the database records as present. Comparing the two
totals costs one request (`/statistics`) and one query, so every pass can afford it; the
look itself (every study id, and per-study instance counts when instances are short) is
made only when the totals say it is needed.

Arrivals move the totals the other way (Orthanc holds studies and instances the database
has not recorded yet), so a lost deletion can hide behind work in flight:

- Orthanc short of the database: a deletion is certainly unrecorded, look now;
- the totals differ otherwise: maybe arrivals, maybe a deletion hidden behind them; look
  at most once per `interval` (the setting RECONCILE_DELETION_CHECK_SECONDS), because
  counting every study's instances means reading every series from Orthanc;
- equal: nothing to look for (a hidden deletion surfaces once the arrivals are recorded).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Totals:
    """Studies and instances present: Orthanc's `/statistics`, or the database's studies
    not marked deleted."""

    studies: int
    instances: int


def deletion_check_reason(
    in_orthanc: Totals, in_database: Totals, *, seconds_since_last: float | None, interval: float
) -> str | None:
    """Why the pass should look for unannounced deletions now, or None."""
    if in_orthanc.studies < in_database.studies or in_orthanc.instances < in_database.instances:
        return (
            f"Orthanc holds {in_orthanc.studies} studies / {in_orthanc.instances} instances, "
            f"the database records {in_database.studies} / {in_database.instances}"
        )
    if in_orthanc == in_database:
        return None
    if seconds_since_last is None or seconds_since_last >= interval:
        return (
            f"totals differ ({in_orthanc.studies}/{in_orthanc.instances} in Orthanc, "
            f"{in_database.studies}/{in_database.instances} recorded): a deletion may hide behind arrivals"
        )
    return None
