"""The change-feed sensor evaluated against the real Orthanc, and reconciliation."""

from __future__ import annotations

import json
import time

import dagster as dg
import pytest

from dicom_pipeline.defs.change_feed import ChangeFeedUnavailable
from dicom_pipeline.ingestion.batch import ingest_studies
from dicom_pipeline.ingestion.change_feed import FeedCursor
from dicom_pipeline.ingestion.reconcile import StaleStudy, find_stale_studies
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import add_instances, change_feed_tick, clear_change_log, ingest, query, seed_one, wait_for_stable

pytestmark = pytest.mark.integration


def _last_seq() -> int:
    with get_runtime().orthanc() as orthanc:
        return int(orthanc.last_change()["Last"])


def _evaluate(cursor: str | None) -> dg.SensorResult:
    return change_feed_tick(cursor)


def test_sensor_requests_one_run_per_stable_study_keyed_by_study_uid_with_sequence(stack_settings: Settings) -> None:
    start = FeedCursor(_last_seq()).dump()
    seeded, spec = seed_one(stack_settings, modality="DX")
    wait_for_stable(stack_settings, seeded.orthanc_id)

    result = _evaluate(start)

    requests = [r for r in result.run_requests or [] if r.tags.get("dicom/orthanc_id") == seeded.orthanc_id]
    assert len(requests) == 1
    request = requests[0]
    assert request.run_key is not None and request.run_key.startswith(f"{spec.study_uid}:{seeded.orthanc_id}:")
    # Known before the run exists, so the per-study concurrency limit sees it.
    assert request.tags["dicom/study_uid"] == spec.study_uid
    assert request.tags["dicom/trigger"] == "sensor" and request.tags["dicom/correlation_id"]
    assert request.run_config["ops"]["extract_study"]["config"]["orthanc_study_id"] == seeded.orthanc_id
    assert json.loads(result.cursor or "{}")["seq"] >= int(request.run_key.split(":")[2])


def test_later_stable_study_of_the_same_study_gets_a_new_run_key(stack_settings: Settings) -> None:
    start = FeedCursor(_last_seq()).dump()
    seeded, spec = seed_one(stack_settings, series=1, instances=1)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    first = _evaluate(start)
    key_one = next(r.run_key for r in first.run_requests or [] if r.tags["dicom/orthanc_id"] == seeded.orthanc_id)

    add_instances(stack_settings, spec, per_series=2)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    second = _evaluate(first.cursor)
    keys_two = [r.run_key for r in second.run_requests or [] if r.tags["dicom/orthanc_id"] == seeded.orthanc_id]
    assert len(keys_two) == 1 and keys_two[0] != key_one


def test_sensor_skips_saying_why_when_nothing_is_new(stack_settings: Settings) -> None:
    result = _evaluate(FeedCursor(_last_seq()).dump())
    assert not result.run_requests
    assert result.skip_reason is not None and "no stable study needing a run" in (result.skip_reason.skip_message or "")


def test_sensor_asks_for_reconciliation_when_orthanc_sequence_went_back(stack_settings: Settings) -> None:
    result = _evaluate(FeedCursor(_last_seq() + 10_000).dump())
    jobs = [r.job_name for r in result.run_requests or []]
    assert jobs == ["reconcile"]


def test_orthanc_unreachable_fails_the_tick_without_moving_the_cursor(stack_settings: Settings) -> None:
    unreachable = stack_settings.model_copy(update={"orthanc_url": "http://127.0.0.1:9"})  # nothing listens there
    with pytest.raises(ChangeFeedUnavailable, match="cursor stays at 7"):
        change_feed_tick(FeedCursor(7).dump(), unreachable)


def test_reconciliation_finds_a_study_no_trigger_announced_and_ingests_it(stack_settings: Settings) -> None:
    # Seeded while no webhook or sensor runs, and the change log cleared, as if both were lost.
    seeded, spec = seed_one(stack_settings, modality="CR")
    wait_for_stable(stack_settings, seeded.orthanc_id)
    clear_change_log(stack_settings)

    stale = {s.orthanc_id: s.reason for s in find_stale_studies(get_runtime())}
    assert stale.get(seeded.orthanc_id) == "missing"

    report = ingest_studies(get_runtime(), [seeded.orthanc_id], trigger="reconcile", run_id=None)
    assert report.as_dict()["created"] == 1
    assert query(
        "SELECT trigger FROM study_version v JOIN study s ON s.id = v.study_id WHERE s.study_instance_uid = :uid",
        uid=spec.study_uid,
    ) == [("reconcile",)]
    assert seeded.orthanc_id not in {s.orthanc_id for s in find_stale_studies(get_runtime())}


def test_reconciliation_skips_up_to_date_studies_and_finds_changed_ones(stack_settings: Settings) -> None:
    seeded, spec = seed_one(stack_settings, series=1, instances=1)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    ingest(seeded.orthanc_id)
    assert seeded.orthanc_id not in {s.orthanc_id for s in find_stale_studies(get_runtime())}
    add_instances(stack_settings, spec, per_series=2)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    assert {s.orthanc_id: s.reason for s in find_stale_studies(get_runtime())}.get(seeded.orthanc_id) == "changed"


def test_a_burst_gives_every_study_its_own_run_spread_over_ticks(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicom_pipeline.defs import change_feed

    # A small cap per tick makes the burst span several ticks without seeding hundreds.
    monkeypatch.setattr(change_feed, "MAX_RUNS_PER_TICK", 3)
    start = FeedCursor(_last_seq()).dump()
    burst = [seed_one(stack_settings, modality="DX", size=8) for _ in range(7)]
    for seeded, _ in burst:
        wait_for_stable(stack_settings, seeded.orthanc_id)

    requested: list[str] = []
    cursor: str | None = start
    for _ in range(10):
        result = _evaluate(cursor)
        runs = result.run_requests or []
        assert len(runs) <= 3, "a tick requested more runs than its cap"
        assert all(r.job_name == "ingest_study" for r in runs)
        requested += [r.run_config["ops"]["extract_study"]["config"]["orthanc_study_id"] for r in runs]
        if result.cursor == cursor:
            break
        cursor = result.cursor
    mine = [oid for oid in requested if oid in {s.orthanc_id for s, _ in burst}]
    assert sorted(mine) == sorted(s.orthanc_id for s, _ in burst), "every study of the burst, each once"


def test_reconciliation_looks_again_at_a_study_ingested_while_unstable(stack_settings: Settings) -> None:
    # Orthanc's LastUpdate has one-second resolution: instances arriving in the same second
    # as the ingestion's read would otherwise go unnoticed.
    seeded, _ = seed_one(stack_settings, modality="DX", size=8)
    with get_runtime().orthanc() as orthanc:
        assert not orthanc.study(seeded.orthanc_id)["IsStable"]
    ingest(seeded.orthanc_id)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    assert {s.orthanc_id: s.reason for s in find_stale_studies(get_runtime())}.get(seeded.orthanc_id) == "changed"
    ingest(seeded.orthanc_id)
    assert seeded.orthanc_id not in {s.orthanc_id for s in find_stale_studies(get_runtime())}


def test_periodic_reconciliation_costs_what_changed_and_a_full_scan_only_on_demand(stack_settings: Settings) -> None:
    from dicom_pipeline.ingestion.reconcile import plan_reconciliation

    runtime = get_runtime()
    time.sleep(stack_settings.orthanc_stable_age + 1)  # studies of earlier tests settle first
    plan_reconciliation(runtime)  # a first pass (full if there is no cursor yet) sets the cursor
    quiet = plan_reconciliation(runtime)
    # Deletions other tests left unrecorded may be found by the totals' check (its own tests
    # are in test_deletions.py); what the change log gives is nothing here.
    assert (quiet.mode, quiet.studies_checked, _not_deletions(quiet.stale)) == ("changes", 0, []), (
        "nothing new, nothing checked"
    )

    seeded, _ = seed_one(stack_settings, modality="DX", size=8)
    wait_for_stable(stack_settings, seeded.orthanc_id)
    found = plan_reconciliation(runtime)
    assert found.mode == "changes" and found.changes_read > 0
    assert found.studies_checked == 1 and [s.orthanc_id for s in _not_deletions(found.stale)] == [seeded.orthanc_id]
    assert plan_reconciliation(runtime).studies_checked == 0, "the cursor moved past what was seen"

    full = plan_reconciliation(runtime, full=True)
    assert full.mode == "full" and full.studies_checked > 1
    assert seeded.orthanc_id in {s.orthanc_id for s in full.stale}


def test_reconcile_sensor_gives_each_missed_study_its_own_run(stack_settings: Settings) -> None:
    from dicom_pipeline.defs.reconcile import build_reconcile_sensor
    from dicom_pipeline.defs.resources import resources_from_settings
    from dicom_pipeline.ingestion.reconcile import plan_reconciliation

    time.sleep(stack_settings.orthanc_stable_age + 1)
    plan_reconciliation(get_runtime())  # the cursor: now
    seeded, spec = seed_one(stack_settings, modality="DX", size=8)  # as if webhook and sensor both missed it
    wait_for_stable(stack_settings, seeded.orthanc_id)

    sensor = build_reconcile_sensor(running=True)
    with dg.instance_for_test() as instance:
        resources = resources_from_settings(stack_settings)
        # A first start (no cursor): the change feed names the studies of Orthanc's log and
        # gives each its run; a bulk scan now would ingest them first (#22: four demo runs
        # that found their study unchanged). This tick only sets the cursor.
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            first = sensor(context)
        assert isinstance(first, dg.SensorResult)
        assert (first.run_requests, first.cursor) == ([], "0"), "a first tick requests nothing"
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor) as context:
            result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    runs = [r for r in result.run_requests or [] if r.tags.get("dicom/orthanc_id") == seeded.orthanc_id]
    assert len(runs) == 1 and runs[0].job_name == "ingest_study" and runs[0].tags["dicom/trigger"] == "reconcile"
    assert runs[0].run_config["ops"]["extract_study"]["config"]["orthanc_study_id"] == seeded.orthanc_id
    assert runs[0].tags["dicom/study_uid"] == spec.study_uid


def _not_deletions(stale: list[StaleStudy]) -> list[StaleStudy]:
    return [study for study in stale if study.reason != "deleted" and not study.evidence]
