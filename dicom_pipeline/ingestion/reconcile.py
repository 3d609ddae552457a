"""Reconciliation: which Orthanc studies are missing from the database or changed since.

Two ways to look, chosen so that a pass costs what changed, not what Orthanc holds:

- **changes** (the periodic pass): reads Orthanc's change log from where the last pass
  stopped (`reconcile_cursor`) and checks only the studies that became stable since. With
  nothing new, that is one request to Orthanc.
- **full** (on demand, nightly, the first pass, or when the change log cannot be trusted:
  Orthanc's database reset, or the log truncated past the cursor): pages through every
  study; per page one SQL query compares Orthanc's LastUpdate with what the last ingestion
  saw. It also finds deletions, which Orthanc's change log does not keep (a deleted
  resource's changes go with it) and which do not move a study's LastUpdate: studies the
  database holds that Orthanc no longer does, and studies whose instance count in Orthanc
  (paged from its series) differs from the database's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.models import OrthancStudySeen, ReconcileCursor, Study
from dicom_pipeline.ingestion.change_feed import FeedCursor, FeedPlan, read_feed
from dicom_pipeline.orthanc.client import OrthancClient, StudyState
from dicom_pipeline.runtime import Runtime

CURSOR_NAME = "orthanc"
PAGE_SIZE = 1000


@dataclass(frozen=True)
class StaleStudy:
    orthanc_id: str
    reason: str  # "missing", "changed", or "deleted" (in Orthanc: the run records it)


@dataclass
class ReconcilePass:
    mode: Literal["changes", "full"]
    why: str
    changes_read: int = 0
    studies_checked: int = 0
    stale: list[StaleStudy] = field(default_factory=list)
    last_updates: dict[str, str] = field(default_factory=dict)  # Orthanc id -> LastUpdate seen
    states: dict[str, StudyState] = field(default_factory=dict)  # Orthanc id -> state seen (changes pass)


class FullScanNeeded(Exception):
    """The change log cannot answer (no cursor yet, Orthanc reset, log truncated)."""


def plan_reconciliation(runtime: Runtime, *, full: bool = False, allow_full: bool = True) -> ReconcilePass:
    """The studies to ingest; moves the cursor only for a pass that completed its look.

    The cursor is taken *before* a full scan, so changes made during the scan are looked at
    again by the next pass (at least once, never lost). `allow_full=False` (a sensor tick,
    which must stay short) raises FullScanNeeded instead of scanning everything.
    """
    with runtime.orthanc() as orthanc:
        stored = _stored_cursor(runtime)
        if not full and stored is not None:
            plan = read_feed(orthanc, FeedCursor(stored), PAGE_SIZE, max_pages=1_000_000)
            if plan.reconcile_reason is None:
                # Studies announced stable, and studies that arrived whose announcement may
                # never come (Orthanc restarted inside their StableAge): the state says which
                # are stable now. A study receiving instances again is announced again.
                seen = {oid: orthanc.study_state(oid) for oid in {**plan.new_studies, **plan.stable_studies}}
                arrivals = dict(plan.new_studies)
                # Instances added to studies Orthanc already held: one request each (a
                # change names the instance only), oldest first so a study's arrival is
                # its first instance's seq.
                for instance, seq in sorted(plan.new_instances.items(), key=lambda item: item[1]):
                    state = orthanc.instance_study_state(instance)
                    if state is None:
                        continue
                    arrivals.setdefault(state.orthanc_id, seq)
                    seen.setdefault(state.orthanc_id, state)
                states = {oid: state for oid, state in seen.items() if state is not None and state.stable}
                stable = {oid: state.last_update for oid, state in states.items() if state.last_update is not None}
                changed = ReconcilePass("changes", f"changes after seq {stored}", changes_read=plan.changes_read)
                changed.studies_checked = len(seen)
                changed.stale = list(_stale(runtime, stable.items()))
                changed.last_updates = stable
                changed.states = states
                _store_cursor(runtime, _cursor_before_settling(plan, arrivals, seen))
                return changed
            why = f"full scan: {plan.reconcile_reason}"
        else:
            why = "full scan: asked for" if full else "full scan: first pass"
        if not allow_full:
            raise FullScanNeeded(why)
        last = int(orthanc.last_change().get("Last", 0))
        scan = ReconcilePass("full", why)
        scan.studies_checked, scan.stale = _full_scan(runtime, orthanc)
        _store_cursor(runtime, last)
        return scan


def _cursor_before_settling(plan: FeedPlan, arrivals: dict[str, int], seen: dict[str, StudyState | None]) -> int:
    """Where the next pass starts: past every change read, except that it never passes a
    study that received something (`arrivals`: study -> first seq) and is still settling
    without its StableStudy, so a lost announcement is looked at again (at least once,
    never lost)."""
    settling = [
        seq
        for oid, seq in arrivals.items()
        if oid not in plan.stable_studies and (state := seen.get(oid)) is not None and not state.stable
    ]
    return min(settling) - 1 if settling else plan.next_seq


def find_stale_studies(runtime: Runtime) -> list[StaleStudy]:
    """Every stale study, by a full scan that moves no cursor (`reconcile --dry-run`, tests)."""
    with runtime.orthanc() as orthanc:
        return _full_scan(runtime, orthanc)[1]


def _full_scan(runtime: Runtime, orthanc: OrthancClient) -> tuple[int, list[StaleStudy]]:
    """(studies checked, stale studies) over every study in Orthanc, a page at a time."""
    checked = 0
    stale: list[StaleStudy] = []
    stable: set[str] = set()
    for page in _pages(orthanc.studies_page):
        checked += len(page)
        # Unstable studies are still receiving instances; they will announce themselves.
        stable.update(i["ID"] for i in page if i.get("IsStable", True))
        stale += _stale(runtime, ((i["ID"], i.get("LastUpdate")) for i in page if i.get("IsStable", True)))
    instances_in_orthanc: Counter[str] = Counter()
    for series_page in _pages(orthanc.series_page):
        for series in series_page:
            instances_in_orthanc[series["ParentStudy"]] += len(series.get("Instances") or ())
    already = {s.orthanc_id for s in stale}
    with transaction(runtime.engine) as session:
        current = session.execute(
            select(Study.orthanc_id, Study.number_of_instances).where(
                Study.deleted_at.is_(None), Study.orthanc_id.is_not(None)
            )
        ).all()
    for orthanc_id, count in current:
        if orthanc_id is None or orthanc_id in already:
            continue
        if orthanc_id not in instances_in_orthanc:
            stale.append(StaleStudy(orthanc_id, "deleted"))
        elif orthanc_id in stable and instances_in_orthanc[orthanc_id] != count:
            stale.append(StaleStudy(orthanc_id, "changed"))
    return checked, stale


def _pages(read: Callable[[int, int], list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    since = 0
    while True:
        page = read(since, PAGE_SIZE)
        if not page:
            return
        yield page
        since += len(page)
        if len(page) < PAGE_SIZE:
            return


def _stale(runtime: Runtime, studies: Iterable[tuple[str, object]]) -> Iterator[StaleStudy]:
    """Of (orthanc id, LastUpdate) pairs, those never ingested or changed since (one query)."""
    wanted = dict(studies)
    if not wanted:
        return
    with transaction(runtime.engine) as session:
        seen = {
            row.orthanc_id: row
            for row in session.execute(
                select(
                    OrthancStudySeen.orthanc_id, OrthancStudySeen.last_update, OrthancStudySeen.stable_when_seen
                ).where(OrthancStudySeen.orthanc_id.in_(list(wanted)))
            ).all()
        }
    for orthanc_id, last_update in wanted.items():
        row = seen.get(orthanc_id)
        if row is None:
            yield StaleStudy(orthanc_id, "missing")
        elif row.last_update != last_update or not row.stable_when_seen:
            # Read while unstable: instances may have arrived within LastUpdate's second.
            yield StaleStudy(orthanc_id, "changed")


def _stored_cursor(runtime: Runtime) -> int | None:
    with transaction(runtime.engine) as session:
        return session.scalar(select(ReconcileCursor.seq).where(ReconcileCursor.name == CURSOR_NAME))


def _store_cursor(runtime: Runtime, seq: int) -> None:
    with transaction(runtime.engine) as session:
        statement = insert(ReconcileCursor).values(name=CURSOR_NAME, seq=seq)
        session.execute(
            statement.on_conflict_do_update(index_elements=["name"], set_={"seq": seq, "updated_at": func.now()})
        )
