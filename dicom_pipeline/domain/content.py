"""A study's content, its hash, the difference between two contents, and event ids."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

# Fixed namespace so the same study version always gets the same event id.
EVENT_NAMESPACE = uuid.UUID("8a4f3c52-52b1-4d8e-9a0e-6d1c0b7f9e21")

Content = Mapping[str, str]  # SOP Instance UID -> sha256 of the file


def content_hash(content: Content) -> str:
    """sha256 over the sorted (SOP Instance UID, sha256) pairs: order-independent."""
    digest = hashlib.sha256()
    for sop_uid in sorted(content):
        digest.update(f"{sop_uid}:{content[sop_uid]}\n".encode("ascii"))
    return digest.hexdigest()


def study_event_id(study_uid: str, version: int, study_content_hash: str) -> str:
    """Deterministic: a redelivered or replayed event keeps its id, so consumers can dedupe.

    The version is part of it because content can return to an earlier state (an instance
    deleted and sent again), and that later version is a different event.
    """
    return str(uuid.uuid5(EVENT_NAMESPACE, f"study-version:{study_uid}:{version}:{study_content_hash}"))


def dead_letter_event_id(dead_letter_id: int) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"dead-letter:{dead_letter_id}"))


@dataclass(frozen=True)
class ContentDiff:
    """What changed between the previous version's content and the new one."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff_content(previous: Content, current: Content) -> ContentDiff:
    return ContentDiff(
        added=tuple(sorted(set(current) - set(previous))),
        removed=tuple(sorted(set(previous) - set(current))),
        changed=tuple(sorted(uid for uid in set(current) & set(previous) if current[uid] != previous[uid])),
    )
