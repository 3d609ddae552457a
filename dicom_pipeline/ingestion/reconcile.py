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

A deletion whose notice was lost is found by the periodic pass too, when Orthanc's totals
say one is missing (ingestion/deletion_check.py): then it compares study ids, and instance
counts only when instances are short.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.models import DeadLetter, OrthancStudySeen, ReconcileCursor, Study
from dicom_pipeline.ingestion.change_feed import FeedCursor, FeedPlan, read_feed
from dicom_pipeline.ingestion.deletion_check import Totals, deletion_check_reason
from dicom_pipeline.orthanc.client import OrthancClient, StudyState
from dicom_pipeline.runtime import Runtime

CURSOR_NAME = "orthanc"
# Its row's updated_at is when the periodic pass last looked for unannounced deletions.
DELETION_CHECK_NAME = "orthanc-deletions"
# Refused studies counted into the totals, one Orthanc request each per pass (~1-2 ms on a
# local network: ~1-2 s a pass at the cap); beyond this many (a site with a backlog of
# dead letters) the rest make the totals differ and the interval decides, as with
# arrivals in flight. 100 was too few for the test suite's own backlog (CI, 2026-12-04).
REFUSED_STUDIES_COUNTED = 1000
PAGE_SIZE = 1000
# The studies the database records as present in Orthanc.
_RECORDED_PRESENT = (Study.deleted_at.is_(None), Study.orthanc_id.is_not(None))


@dataclass(frozen=True)
class StaleStudy:
    orthanc_id: str
    reason: str  # "missing", "changed", or "deleted" (in Orthanc: the run records it)
    # What tells this finding from an earlier one of the same study at the same LastUpdate
    # (a deletion moves no LastUpdate): part of the run key, so Dagster does not skip it.
    evidence: str = ""

    def run_key(self, last_update: str | None) -> str:
        return f"reconcile:{self.orthanc_id}:{last_update}" + (f":{self.evidence}" if self.evidence else "")


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
                _look_for_unannounced_deletions(runtime, orthanc, changed)
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
    instances_in_orthanc = _instances_per_study(orthanc)
    already = {s.orthanc_id for s in stale}
    for orthanc_id, count, _version in _recorded_studies(runtime):
        if orthanc_id in already:
            continue
        if orthanc_id not in instances_in_orthanc:
            stale.append(StaleStudy(orthanc_id, "deleted"))
        elif orthanc_id in stable and instances_in_orthanc[orthanc_id] != count:
            stale.append(StaleStudy(orthanc_id, "changed"))
    return checked, stale


def _look_for_unannounced_deletions(runtime: Runtime, orthanc: OrthancClient, look: ReconcilePass) -> None:
    """Adds to a changes pass the studies deleted (wholly, or some of their instances) in
    Orthanc whose deletion no notice brought, when Orthanc's totals call for a look."""
    expected = expected_totals(runtime, orthanc)
    # Read after the expectation: a deletion between the two readings makes Orthanc short
    # (a look, never a hidden deletion); an arrival only adds to what Orthanc holds.
    statistics = orthanc.statistics()
    in_orthanc = Totals(int(statistics["CountStudies"]), int(statistics["CountInstances"]))
    with transaction(runtime.engine) as session:
        seconds_since_last = session.scalar(
            select(func.extract("epoch", func.now() - ReconcileCursor.updated_at)).where(
                ReconcileCursor.name == DELETION_CHECK_NAME
            )
        )
    why = deletion_check_reason(
        in_orthanc,
        expected,
        seconds_since_last=None if seconds_since_last is None else float(seconds_since_last),
        interval=runtime.settings.reconcile_deletion_check_seconds,
    )
    if why is None:
        return
    look.why += f"; deletion check: {why}"
    # The database first: a study recorded after Orthanc's list was read would look deleted.
    recorded = _recorded_studies(runtime)
    present = set(orthanc.study_ids())
    already = {s.orthanc_id for s in look.stale}
    deleted = [(oid, count, version) for oid, count, version in recorded if oid not in present]
    look.stale += [StaleStudy(oid, "deleted", f"deleted-v{v}") for oid, _count, v in deleted if oid not in already]
    # Instances still differ once whole studies are counted out (by the same reading of
    # the database as the ids): some study may have lost some of its instances. Only then
    # is it worth counting every study's instances (the expanded series: the costly part,
    # which is why a look that is not certain waits for the interval).
    if in_orthanc.instances != sum(count for oid, count, _v in recorded if oid in present):
        per_study = _instances_per_study(orthanc)
        for oid, count, _version in recorded:
            # Fewer than recorded: arrivals cannot explain it (more would be an arrival,
            # which the change log announces).
            if oid in present and oid not in already and per_study[oid] < count:
                state = orthanc.study_state(oid)
                if state is None:
                    continue
                look.stale.append(StaleStudy(oid, "changed", f"{per_study[oid]}-instances"))
                look.states[oid] = state
                if state.last_update is not None:
                    look.last_updates[oid] = state.last_update
    _store_cursor(runtime, len(present), name=DELETION_CHECK_NAME)


def expected_totals(runtime: Runtime, orthanc: OrthancClient) -> Totals:
    """What Orthanc should hold if no deletion went unannounced and every arrival is
    recorded: the studies recorded as present, and the studies the pipeline refused (an
    open dead letter naming the Orthanc study) as Orthanc holds them. Orthanc keeps a
    refused study and the database records it not at all, or as it was before the refused
    change; counted as recorded, a refused study would make the totals differ for as long
    as its letter is open, and a lost deletion beside it would wait for the interval."""
    with transaction(runtime.engine) as session:
        studies, instances = session.execute(
            select(func.count(), func.coalesce(func.sum(Study.number_of_instances), 0)).where(*_RECORDED_PRESENT)
        ).one()
        refused = [
            str(oid)
            for oid in session.scalars(
                select(DeadLetter.orthanc_id)
                .where(DeadLetter.resolved_at.is_(None), DeadLetter.orthanc_id.is_not(None))
                .distinct()
                .limit(REFUSED_STUDIES_COUNTED)
            )
        ]
        recorded = {
            str(oid): int(count)
            for oid, count in session.execute(
                select(Study.orthanc_id, Study.number_of_instances).where(
                    *_RECORDED_PRESENT, Study.orthanc_id.in_(refused)
                )
            )
        }
    expected = Totals(int(studies), int(instances))
    for orthanc_id in refused:
        held = orthanc.study_instance_count(orthanc_id)
        if held is None:
            continue  # gone from Orthanc: its record stays counted, so a deletion of it shows
        before = recorded.get(orthanc_id)
        expected = Totals(expected.studies + (before is None), expected.instances + held - (before or 0))
    return expected


def _instances_per_study(orthanc: OrthancClient) -> Counter[str]:
    counts: Counter[str] = Counter()
    for series_page in _pages(orthanc.series_page):
        for series in series_page:
            counts[series["ParentStudy"]] += len(series.get("Instances") or ())
    return counts


def _recorded_studies(runtime: Runtime) -> list[tuple[str, int, int]]:
    """(Orthanc id, instances, current version) of every study the database records as present."""
    with transaction(runtime.engine) as session:
        rows = session.execute(
            select(Study.orthanc_id, Study.number_of_instances, Study.current_version).where(*_RECORDED_PRESENT)
        ).all()
    return [(str(oid), int(count), int(version)) for oid, count, version in rows]


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


def _store_cursor(runtime: Runtime, seq: int, *, name: str = CURSOR_NAME) -> None:
    with transaction(runtime.engine) as session:
        statement = insert(ReconcileCursor).values(name=name, seq=seq)
        session.execute(
            statement.on_conflict_do_update(index_elements=["name"], set_={"seq": seq, "updated_at": func.now()})
        )
