"""Orthanc killed and restarted while a study is still settling (inside StableAge).

Orthanc's stability timers live in memory: after the restart it reports the study stable,
but its change log holds only NewStudy for it, and no StableStudy change or OnStableStudy
call ever comes. The periodic reconciliation must still find it, without a full scan.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import httpx
from dicom_pipeline_dev.stack.control import Stack
from dicom_pipeline_dev.stack.orthanc import OrthancService

from dicom_pipeline.ingestion.reconcile import plan_reconciliation
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings
from tests.e2e.system import wait_for
from tests.helpers import seed_one


def _port_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _changes_of(orthanc: httpx.Client, orthanc_id: str) -> set[str]:
    body = orthanc.get("/changes", params={"since": 0, "limit": 100_000}).json()
    return {c["ChangeType"] for c in body["Changes"] if c["ID"] == orthanc_id}


def test_a_study_orthanc_never_announced_stable_after_a_restart_is_found_by_the_periodic_pass(
    stack_settings: Settings, orthanc: httpx.Client
) -> None:
    runtime = get_runtime()
    plan_reconciliation(runtime)  # the periodic pass's cursor: now (a full scan if it had none)
    service = OrthancService(Stack.from_settings(stack_settings).layout)

    seeded, _spec = seed_one(stack_settings, modality="CR", series=1, instances=1)
    pid = service.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # well inside StableAge: the upload finished a moment ago
    # Its pid goes before its last thread (and the listening socket) does.
    wait_for(
        lambda: service.running_pid() is None and _port_closed(stack_settings.orthanc_http_port), 30, "Orthanc to die"
    )
    service.start()

    # The fault hit the study in flight: stable now, never announced.
    time.sleep(stack_settings.orthanc_stable_age + 2)
    assert orthanc.get(f"/studies/{seeded.orthanc_id}").json()["IsStable"] is True
    assert _changes_of(orthanc, seeded.orthanc_id) == {"NewStudy"}, "Orthanc announced it after all"

    look = plan_reconciliation(runtime, allow_full=False)

    assert look.mode == "changes"
    assert seeded.orthanc_id in {s.orthanc_id for s in look.stale}
    assert look.states[seeded.orthanc_id].study_uid == _spec.study_uid  # known for the run's key and tags


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
