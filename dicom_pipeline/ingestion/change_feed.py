"""Reading Orthanc's change feed from a cursor: which studies became stable, and whether the
feed can still be trusted (a reset or truncated log sends us to reconciliation instead)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol


class ChangeSource(Protocol):
    def changes(self, since: int, limit: int) -> dict[str, Any]: ...
    def last_change(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class FeedCursor:
    seq: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> FeedCursor:
        if not raw:
            return cls()
        try:
            return cls(seq=int(json.loads(raw)["seq"]))
        except (ValueError, KeyError, TypeError):
            return cls()

    def dump(self) -> str:
        return json.dumps({"seq": self.seq})


@dataclass
class FeedPlan:
    """What one tick should do."""

    stable_studies: dict[str, int] = field(default_factory=dict)  # Orthanc study id -> change seq
    # Studies that arrived (first NewStudy change seen): Orthanc's StableStudy for them can
    # be lost (its stability timers live in memory: a restart inside StableAge drops them).
    new_studies: dict[str, int] = field(default_factory=dict)
    # Instances that arrived (NewInstance), the only trace of an instance added to a study
    # Orthanc already held: its StableStudy can be lost the same way. Orthanc id -> seq.
    new_instances: dict[str, int] = field(default_factory=dict)
    next_seq: int = 0
    done: bool = True
    changes_read: int = 0
    reconcile_reason: str | None = None


def read_feed(
    source: ChangeSource, cursor: FeedCursor, page_size: int, max_pages: int, max_studies: int | None = None
) -> FeedPlan:
    """What to do for the changes after the cursor.

    At most `max_studies` distinct studies per plan: the cursor then stops just before the
    change that would have been one too many, and the next tick goes on from there (a
    sensor tick that requests too many runs times out and is evaluated again).
    """
    last = int(source.last_change().get("Last", 0))
    if last < cursor.seq:
        # Orthanc's sequence went backwards: its database was reset or replaced.
        return FeedPlan(next_seq=last, reconcile_reason=f"sequence went back from {cursor.seq} to {last}")
    plan = FeedPlan(next_seq=cursor.seq)
    if cursor.seq > 0:
        oldest = source.changes(0, 1).get("Changes") or []
        if oldest and int(oldest[0]["Seq"]) > cursor.seq + 1:
            plan.reconcile_reason = (
                f"changes {cursor.seq + 1}..{int(oldest[0]['Seq']) - 1} are no longer in Orthanc's log"
            )
    for _ in range(max_pages):
        page = source.changes(plan.next_seq, page_size)
        changes = page.get("Changes") or []
        plan.changes_read += len(changes)
        for change in changes:
            if change.get("ChangeType") == "StableStudy":
                full = max_studies is not None and len(plan.stable_studies) >= max_studies
                if full and change["ID"] not in plan.stable_studies:
                    plan.done = False
                    return plan
                plan.stable_studies[change["ID"]] = int(change["Seq"])
            elif change.get("ChangeType") == "NewStudy":
                plan.new_studies.setdefault(change["ID"], int(change["Seq"]))
            elif change.get("ChangeType") == "NewInstance":
                plan.new_instances.setdefault(change["ID"], int(change["Seq"]))
            plan.next_seq = max(plan.next_seq, int(change["Seq"]))
        plan.next_seq = max(plan.next_seq, int(page.get("Last", plan.next_seq)))
        plan.done = bool(page.get("Done", True))
        if plan.done:
            break
    return plan
