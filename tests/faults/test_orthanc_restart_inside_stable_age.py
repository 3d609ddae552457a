"""Orthanc killed and restarted while a study is still settling (inside StableAge).

Orthanc's stability timers live in memory: after the restart it reports the study stable,
but its change log holds only NewStudy for it (or, for instances added to a study it
already held, only NewInstance), and no StableStudy change or OnStableStudy call ever
comes. The periodic reconciliation must still find it, without a full scan.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from dicom_pipeline_dev.http import ServiceSession
from dicom_pipeline_dev.stack.control import Stack
from dicom_pipeline_dev.stack.orthanc import OrthancService

from dicom_pipeline.ingestion.reconcile import plan_reconciliation
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings
from tests.e2e.system import wait_for
from tests.helpers import add_instances, ingest, seed_one, wait_for_stable


def _port_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _changes_of(orthanc: ServiceSession, orthanc_id: str, *, family: bool = False) -> set[Any]:
    """The kinds of the study's own changes; with `family`, (seq, kind) of its own, its
    series' and its instances' changes."""
    body = orthanc.get("/changes", params={"since": 0, "limit": 100_000}).json()
    if not family:
        return {c["ChangeType"] for c in body["Changes"] if c["ID"] == orthanc_id}
    series = orthanc.get(f"/studies/{orthanc_id}/series").json()
    ids = {orthanc_id, *(s["ID"] for s in series), *(i for s in series for i in s["Instances"])}
    return {(c["Seq"], c["ChangeType"]) for c in body["Changes"] if c["ID"] in ids}


def _kill_and_restart_orthanc(settings: Settings) -> None:
    service = OrthancService(Stack.from_settings(settings).layout)
    pid = service.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # Its pid goes before its last thread (and the listening socket) does.
    wait_for(lambda: service.running_pid() is None and _port_closed(settings.orthanc_http_port), 30, "Orthanc to die")
    service.start()


def test_a_study_orthanc_never_announced_stable_after_a_restart_is_found_by_the_periodic_pass(
    stack_settings: Settings, orthanc: ServiceSession
) -> None:
    runtime = get_runtime()
    plan_reconciliation(runtime)  # the periodic pass's cursor: now (a full scan if it had none)

    seeded, _spec = seed_one(stack_settings, modality="CR", series=1, instances=1)
    _kill_and_restart_orthanc(stack_settings)  # well inside StableAge: the upload finished a moment ago

    # The fault hit the study in flight: stable now, never announced.
    time.sleep(stack_settings.orthanc_stable_age + 2)
    assert orthanc.get(f"/studies/{seeded.orthanc_id}").json()["IsStable"] is True
    assert _changes_of(orthanc, seeded.orthanc_id) == {"NewStudy"}, "Orthanc announced it after all"

    look = plan_reconciliation(runtime, allow_full=False)

    assert look.mode == "changes"
    assert seeded.orthanc_id in {s.orthanc_id for s in look.stale}
    assert look.states[seeded.orthanc_id].study_uid == _spec.study_uid  # known for the run's key and tags


def test_instances_added_to_an_ingested_study_just_before_a_restart_are_found_by_the_periodic_pass(
    stack_settings: Settings, orthanc: ServiceSession
) -> None:
    # Found by the 30-minute soak of 2026-12-03: two studies that had grown by one instance
    # a moment before Orthanc was killed kept their old version; only a full scan would
    # have found them.
    runtime = get_runtime()
    seeded, spec = seed_one(stack_settings, modality="CT", series=1, instances=2)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    assert ingest(seeded.orthanc_id)["status"] == "created"
    plan_reconciliation(runtime)  # the cursor past everything so far, the study's StableStudy included
    before = set(_changes_of(orthanc, seeded.orthanc_id, family=True))

    add_instances(stack_settings, spec, per_series=3)
    _kill_and_restart_orthanc(stack_settings)

    time.sleep(stack_settings.orthanc_stable_age + 2)
    assert orthanc.get(f"/studies/{seeded.orthanc_id}").json()["IsStable"] is True
    new = set(_changes_of(orthanc, seeded.orthanc_id, family=True)) - before
    # The fault hit the study in flight: instances arrived, and no announcement followed.
    assert new and {kind for _seq, kind in new} == {"NewInstance"}, new

    look = plan_reconciliation(runtime, allow_full=False)

    assert look.mode == "changes"
    assert seeded.orthanc_id in {s.orthanc_id for s in look.stale}
    assert look.states[seeded.orthanc_id].study_uid == spec.study_uid


def test_the_periodic_pass_does_not_move_past_a_study_still_settling(stack_settings: Settings) -> None:
    runtime = get_runtime()
    plan_reconciliation(runtime)
    seeded, _spec = seed_one(stack_settings, modality="CR", series=1, instances=1)

    early = plan_reconciliation(runtime, allow_full=False)  # inside StableAge: not stable yet
    assert seeded.orthanc_id not in {s.orthanc_id for s in early.stale}

    wait_for(
        lambda: seeded.orthanc_id in {s.orthanc_id for s in plan_reconciliation(runtime, allow_full=False).stale},
        30,
        "a later pass to look at the study again once it is stable",
    )
