"""What operators do: backfill by Study Date, replay, and dead-letter re-drive."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import dagster as dg
import pytest
from dicom_pipeline_dev.seed.synth import SeedPlan, build_instances, plan_studies

from dicom_pipeline.definitions import build_definitions
from dicom_pipeline.ingestion.replay import replay_events
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings, get_settings
from tests.helpers import KafkaTap, ingest, orthanc_study_id, query, seed_one, unique_seed, unused_study_dates, upload

pytestmark = pytest.mark.integration


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dicom_pipeline.cli", *args], capture_output=True, text=True)


def _run_partition(day: dt.date) -> dict[str, int]:
    job = build_definitions(get_settings(), resources_from_env=False).resolve_job_def("backfill_by_study_date")
    result = job.execute_in_process(partition_key=day.isoformat(), instance=dg.DagsterInstance.ephemeral())
    counts: dict[str, int] = result.output_for_node("ingest_study_date")
    return counts


def test_backfill_ingests_each_study_of_the_dates_once_and_a_rerun_changes_nothing(stack_settings: Settings) -> None:
    days = unused_study_dates(3)
    plan = SeedPlan(
        studies=5, modalities=("CR", "DX"), rows=16, columns=16, dates=(days[0], days[0], days[2]), seed=unique_seed()
    )
    specs = plan_studies(plan)
    for spec in specs:
        upload(stack_settings, build_instances(spec))

    first = [_run_partition(day) for day in days]
    assert [(c["found"], c["created"], c["failed"]) for c in first] == [(4, 4, 0), (0, 0, 0), (1, 1, 0)]
    second = [_run_partition(day) for day in days]
    assert [(c["found"], c["unchanged"], c["created"]) for c in second] == [(4, 4, 0), (0, 0, 0), (1, 1, 0)]
    for spec in specs:
        assert query(
            "SELECT count(*), min(v.trigger) FROM study_version v JOIN study s ON s.id = v.study_id "
            "WHERE s.study_instance_uid = :uid",
            uid=spec.study_uid,
        ) == [(1, "backfill")]


def test_a_failing_study_in_a_backfill_is_dead_lettered_and_redrive_ingests_it_after_the_fix(
    stack_settings: Settings,
) -> None:
    (day,) = unused_study_dates(1)
    good, bad = plan_studies(
        SeedPlan(studies=2, modalities=("DX",), rows=16, columns=16, dates=(day,), seed=unique_seed())
    )
    upload(stack_settings, build_instances(good))
    broken = list(build_instances(bad))
    for ds in broken:
        ds.SOPInstanceUID = ds.SOPInstanceUID + "\x01"  # damaged: refused, named in the dead letter
    upload(stack_settings, broken)
    bad_orthanc_id = orthanc_study_id(stack_settings, bad.study_uid)

    counts = _run_partition(day)
    assert (counts["found"], counts["created"], counts["failed"]) == (2, 1, 1)
    letter = query("SELECT id, error_type, resolved_at FROM dead_letter WHERE orthanc_id = :id", id=bad_orthanc_id)
    assert len(letter) == 1 and letter[0][1] == "InvalidDicom" and letter[0][2] is None

    # The fix: the source sends a corrected file for the same instance; Orthanc replaces it.
    with get_runtime().orthanc() as orthanc:
        instance_id = orthanc.study_instances(bad_orthanc_id)[0].orthanc_id
    from dicom_pipeline_dev.seed.runner import orthanc_client

    with orthanc_client(stack_settings) as client:
        client.delete(f"/instances/{instance_id}").raise_for_status()
    upload(stack_settings, build_instances(bad))
    fixed_id = orthanc_study_id(stack_settings, bad.study_uid)
    assert fixed_id == bad_orthanc_id  # Orthanc ids derive from the UIDs

    result = _cli("dlq", "redrive", "--id", str(letter[0][0]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "created"
    assert query("SELECT resolved_at IS NOT NULL FROM dead_letter WHERE id = :id", id=letter[0][0]) == [(True,)]
    listed = json.loads(_cli("dlq", "list", "--json").stdout)
    assert letter[0][0] not in {d["id"] for d in listed}


def test_replay_republishes_exactly_the_range_with_the_same_event_ids(
    stack_settings: Settings, events: KafkaTap
) -> None:
    seeded, spec = seed_one(stack_settings, modality="CR")
    original = ingest(seeded.orthanc_id)
    first = events.read(expected=1, key=spec.study_uid)
    today = dt.datetime.now(dt.UTC).date()

    report = replay_events(get_runtime(), today, today, study_uid=spec.study_uid)
    replayed = events.read(expected=1, key=spec.study_uid)

    assert report.published == 1
    assert [m.value["event_id"] for m in first] == [m.value["event_id"] for m in replayed] == [original["event_id"]]
    assert replayed[0].value == first[0].value
    yesterday = today - dt.timedelta(days=1)
    assert replay_events(get_runtime(), yesterday, yesterday, study_uid=spec.study_uid).published == 0
