"""Orthanc stopped for a while, and a raw store that fills up."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicom_pipeline_dev.stack.control import Stack
from dicom_pipeline_dev.stack.orthanc import OrthancService
from fastapi.testclient import TestClient

from dicom_pipeline.defs.change_feed import ChangeFeedUnavailable
from dicom_pipeline.ingestion.batch import ingest_studies
from dicom_pipeline.ingestion.change_feed import FeedCursor
from dicom_pipeline.ingestion.reconcile import find_stale_studies
from dicom_pipeline.runtime import get_runtime, reset_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import change_feed_tick, ingest, query, seed_one, wait_for_stable
from webhook.main import create_app

pytestmark = pytest.mark.integration


@pytest.fixture()
def orthanc_service(stack_settings: Settings) -> Iterator[OrthancService]:
    service = OrthancService(Stack.from_settings(stack_settings).layout)
    try:
        yield service
    finally:
        if service.running_pid() is None:
            service.start()


def test_orthanc_outage_fails_ticks_keeps_cursor_reports_not_ready_and_loses_no_study(
    stack_settings: Settings, orthanc_service: OrthancService
) -> None:
    reset_runtime()
    before, before_spec = seed_one(stack_settings, modality="CR")
    wait_for_stable(stack_settings, before.orthanc_id)
    with get_runtime().orthanc() as orthanc:
        cursor = FeedCursor(int(orthanc.last_change()["Last"]) - 1).dump()

    orthanc_service.stop()
    with pytest.raises(ChangeFeedUnavailable, match="cursor stays at"):
        change_feed_tick(cursor)
    with TestClient(create_app(get_runtime(), launch_runs=False)) as client:
        ready = client.get("/ready")
    # Requests are still accepted durably: Orthanc is reported, not required.
    assert ready.status_code == 200 and "orthanc" in ready.json()["degraded"]

    orthanc_service.start()
    after, after_spec = seed_one(stack_settings, modality="DX")
    wait_for_stable(stack_settings, after.orthanc_id)
    stale = {s.orthanc_id for s in find_stale_studies(get_runtime())}
    assert {before.orthanc_id, after.orthanc_id} <= stale
    report = ingest_studies(get_runtime(), [before.orthanc_id, after.orthanc_id], trigger="fault-orthanc", run_id=None)
    assert report.as_dict()["created"] == 2
    for spec in (before_spec, after_spec):
        assert query(
            "SELECT count(*) FROM study_version v JOIN study s ON s.id = v.study_id WHERE s.study_instance_uid = :uid",
            uid=spec.study_uid,
        ) == [(1,)]


@pytest.fixture()
def tiny_filesystem() -> Iterator[Path]:
    mount_point = Path(tempfile.mkdtemp(prefix="dp-tiny-store-"))
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


def test_full_store_dead_letters_with_the_reason_leaves_no_partial_file_and_recovers(
    stack_settings: Settings, runtime_env: pytest.MonkeyPatch, tiny_filesystem: Path
) -> None:
    runtime_env.setenv("DICOM_PIPELINE_STORAGE_URL", f"file://{tiny_filesystem}")
    reset_runtime()
    big, big_spec = seed_one(stack_settings, modality="CT", series=1, instances=6, size=512)  # ~3 MB
    small, small_spec = seed_one(stack_settings, modality="DX", size=16)

    failed = ingest(big.orthanc_id)
    fine = ingest(small.orthanc_id)

    assert failed["status"] == "failed" and fine["status"] == "created", "other studies are unaffected"
    letter = query(
        "SELECT failed_op, error_type, error_message FROM dead_letter WHERE run_id = :run", run=failed["run_id"]
    )
    assert letter and letter[0][:2] == ("store_raw", "StorageError")
    assert "No space left on device" in letter[0][2]
    assert not list(tiny_filesystem.rglob("*.tmp")), "no partial file"
    assert query("SELECT count(*) FROM study WHERE study_instance_uid = :uid", uid=big_spec.study_uid) == [(0,)]

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_filesystem)], check=True)
    assert ingest(big.orthanc_id)["status"] == "created"
    assert query("SELECT resolved_at IS NOT NULL FROM dead_letter WHERE run_id = :run", run=failed["run_id"]) == [
        (True,)
    ]
    del small_spec
