"""Reading the change feed: paging, cursor, reset and truncation detection (pure logic)."""

from __future__ import annotations

from typing import Any

from dicom_pipeline.ingestion.change_feed import FeedCursor, read_feed


class FakeOrthancFeed:
    """Orthanc's /changes semantics: since is exclusive, Last is the last returned (or global last)."""

    def __init__(self, changes: list[dict[str, Any]]) -> None:
        self.log = changes

    def changes(self, since: int, limit: int) -> dict[str, Any]:
        after = [c for c in self.log if c["Seq"] > since]
        page = after[:limit]
        last = page[-1]["Seq"] if page else (self.log[-1]["Seq"] if self.log else 0)
        return {"Changes": page, "Done": len(after) <= limit, "Last": last}

    def last_change(self) -> dict[str, Any]:
        return {"Changes": self.log[-1:], "Done": True, "Last": self.log[-1]["Seq"] if self.log else 0}


def _change(seq: int, kind: str = "NewInstance", resource: str = "x") -> dict[str, Any]:
    return {"Seq": seq, "ChangeType": kind, "ID": resource, "ResourceType": "Study"}


def test_stable_studies_are_found_and_cursor_moves_to_last_change() -> None:
    feed = FakeOrthancFeed([_change(1), _change(2, "StableStudy", "a"), _change(3), _change(4, "StableStudy", "b")])
    plan = read_feed(feed, FeedCursor(0), page_size=10, max_pages=5)
    assert plan.stable_studies == {"a": 2, "b": 4}
    assert (plan.next_seq, plan.done, plan.changes_read, plan.reconcile_reason) == (4, True, 4, None)


def test_a_study_stable_twice_keeps_its_latest_change() -> None:
    feed = FakeOrthancFeed([_change(1, "StableStudy", "a"), _change(2), _change(3, "StableStudy", "a")])
    assert read_feed(feed, FeedCursor(0), 10, 5).stable_studies == {"a": 3}


def test_paging_is_bounded_per_tick_and_resumes_from_the_cursor() -> None:
    feed = FakeOrthancFeed([_change(i, "StableStudy", f"s{i}") for i in range(1, 26)])
    first = read_feed(feed, FeedCursor(0), page_size=5, max_pages=2)
    assert (len(first.stable_studies), first.next_seq, first.done) == (10, 10, False)
    second = read_feed(feed, FeedCursor(first.next_seq), page_size=5, max_pages=10)
    assert (min(second.stable_studies.values()), second.next_seq, second.done) == (11, 25, True)


def test_nothing_new_keeps_the_cursor() -> None:
    feed = FakeOrthancFeed([_change(1), _change(2)])
    plan = read_feed(feed, FeedCursor(2), 10, 5)
    assert (plan.stable_studies, plan.next_seq, plan.changes_read) == ({}, 2, 0)


def test_sequence_going_backwards_means_orthanc_was_reset_and_asks_for_reconciliation() -> None:
    feed = FakeOrthancFeed([_change(1), _change(2, "StableStudy", "a")])
    plan = read_feed(feed, FeedCursor(500), 10, 5)
    assert plan.reconcile_reason is not None and "went back" in plan.reconcile_reason
    assert plan.next_seq == 2 and plan.stable_studies == {}


def test_cursor_before_the_oldest_retained_change_asks_for_reconciliation() -> None:
    feed = FakeOrthancFeed([_change(50, "StableStudy", "a"), _change(51)])
    plan = read_feed(feed, FeedCursor(10), 10, 5)
    assert plan.reconcile_reason is not None and "11..49" in plan.reconcile_reason
    assert plan.stable_studies == {"a": 50}


def test_cursor_text_round_trips_and_garbage_starts_from_zero() -> None:
    assert FeedCursor.parse(FeedCursor(42).dump()) == FeedCursor(42)
    assert FeedCursor.parse("not json") == FeedCursor(0)
    assert FeedCursor.parse(None) == FeedCursor(0)


def test_studies_that_arrived_are_kept_with_their_first_change_for_reconciliation() -> None:
    feed = FakeOrthancFeed(
        [_change(1, "NewStudy", "a"), _change(2, "NewStudy", "b"), _change(3, "StableStudy", "a"), _change(4)]
    )
    plan = read_feed(feed, FeedCursor(0), 10, 5)
    assert plan.new_studies == {"a": 1, "b": 2}
    assert plan.stable_studies == {"a": 3}


def test_the_periodic_pass_stops_before_a_study_still_settling_and_passes_a_stable_or_gone_one() -> None:
    from dicom_pipeline.ingestion.reconcile import _cursor_before_settling
    from dicom_pipeline.orthanc.client import StudyState

    feed = FakeOrthancFeed(
        [_change(1, "NewStudy", "gone"), _change(5, "NewStudy", "settling"), _change(7, "NewStudy", "lost"), _change(9)]
    )
    plan = read_feed(feed, FeedCursor(0), 10, 5)
    seen = {
        "gone": None,  # deleted since: nothing to wait for
        "settling": StudyState("settling", "1.2", "20261202T070000", stable=False),
        "lost": StudyState("lost", "1.3", "20261202T070000", stable=True),  # stable, never announced
    }
    assert _cursor_before_settling(plan, plan.new_studies, seen) == 4
    seen["settling"] = StudyState("settling", "1.2", "20261202T070001", stable=True)
    assert _cursor_before_settling(plan, plan.new_studies, seen) == 9


def test_instances_that_arrived_are_kept_with_their_first_change_for_reconciliation() -> None:
    # A late instance into a study Orthanc already held leaves only NewInstance behind when
    # Orthanc restarts inside its StableAge (seen in a soak, 2026-12-03).
    changes = [_change(3, "NewInstance", "i1"), _change(4, "NewInstance", "i2"), _change(6, "StableSeries")]
    feed = FakeOrthancFeed(changes)
    plan = read_feed(feed, FeedCursor(0), 10, 5)
    assert plan.new_instances == {"i1": 3, "i2": 4}
    assert plan.new_studies == {} and plan.stable_studies == {}
