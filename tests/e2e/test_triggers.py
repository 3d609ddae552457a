"""Both triggers end to end: Orthanc -> webhook / change feed -> Dagster daemon -> Kafka."""

from __future__ import annotations

import concurrent.futures
import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dicom_pipeline.settings import Settings
from tests.e2e.system import System, SystemPool, wait_for
from tests.helpers import KafkaTap, all_requests_finished, query, seed_one, wait_for_stable

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 180  # a hang guard only: a run normally lands within seconds


def _versions(study_uid: str) -> list[tuple[int, str, str]]:
    return [
        tuple(r)
        for r in query(
            "SELECT v.version, v.trigger, v.correlation_id FROM study_version v JOIN study s ON s.id = v.study_id "
            "WHERE s.study_instance_uid = :uid ORDER BY v.version",
            uid=study_uid,
        )
    ]


def _auth(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.webhook_token.get_secret_value()}"}


def _notify(system: System, orthanc_id: str, correlation_id: str | None = None) -> requests.Response:
    """What Orthanc's Lua call (or any caller) posts to the webhook."""
    headers = _auth(system.settings) | ({"X-Correlation-ID": correlation_id} if correlation_id else {})
    return requests.post(
        f"{system.webhook_url}/api/v1/ingestion/studies", json={"ID": orthanc_id}, headers=headers, timeout=10
    )


def _final_request_state(system: System, request_id: str) -> dict[str, object]:
    """Polls the webhook until the request has succeeded or failed."""
    url = f"{system.webhook_url}/api/v1/ingestion/studies/{request_id}"

    def finished() -> dict[str, object] | None:
        body: dict[str, object] = requests.get(url, headers=_auth(system.settings), timeout=10).json()
        return body if body["status"] in ("succeeded", "failed") else None

    final = wait_for(finished, RUN_TIMEOUT, f"request {request_id} to finish")
    assert isinstance(final, dict)
    return final


@pytest.fixture(scope="module")
def systems(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemPool]:
    pool = SystemPool(stack_settings, Path(tmp_path_factory.mktemp("trigger-systems")))
    yield pool
    pool.close()


@pytest.fixture()
def webhook_system(systems: SystemPool) -> System:
    """Sensor stopped: the webhook is the only trigger."""
    return systems.get("webhook", sensor=False)


@pytest.fixture()
def full_system(systems: SystemPool) -> System:
    """Sensor running and webhook up: both triggers at once."""
    return systems.get("full", sensor=True)


def test_webhook_request_accepted_while_dagster_is_down_is_launched_once_it_is_up(
    stack_settings: Settings, webhook_system: System, events: KafkaTap
) -> None:
    webhook_system.ensure(dagster=False, webhook=True)
    seeded, spec = seed_one(stack_settings, modality="DX")
    response = _notify(webhook_system, seeded.orthanc_id, "e2e-dagster-down")
    assert response.status_code == 202
    request_id = response.json()["request_id"]
    state = requests.get(
        f"{webhook_system.webhook_url}/api/v1/ingestion/studies/{request_id}", headers=_auth(stack_settings), timeout=10
    ).json()
    assert state["status"] == "accepted" and state["run_id"] is None

    webhook_system.ensure(dagster=True, webhook=True)

    final = _final_request_state(webhook_system, request_id)
    assert final["status"] == "succeeded" and final["run_id"] and final["study_instance_uid"] == spec.study_uid
    # Orthanc's own Lua call also reached the webhook: still one version.
    assert [v[0] for v in _versions(spec.study_uid)] == [1]
    assert (
        len(
            events.read_all(
                key=spec.study_uid, settled=lambda: webhook_system.settled(seeded.orthanc_id, spec.study_uid)
            )
        )
        == 1
    )


def test_webhook_path_alone_ingests_a_seeded_study(
    stack_settings: Settings, webhook_system: System, events: KafkaTap
) -> None:
    webhook_system.ensure(dagster=True, webhook=True)
    seeded, spec = seed_one(stack_settings, series=2, instances=2)
    # Orthanc's OnStableStudy Lua script is the only caller here.
    wait_for(lambda: _versions(spec.study_uid), RUN_TIMEOUT, "the webhook-triggered version")
    assert _versions(spec.study_uid)[0][:2] == (1, "webhook")
    wait_for(lambda: all_requests_finished(seeded.orthanc_id), RUN_TIMEOUT, "the webhook request to finish")
    message = events.read(expected=1, key=spec.study_uid)[0]
    request = query(
        "SELECT correlation_id FROM ingestion_request WHERE orthanc_id = :id AND status = 'succeeded'",
        id=seeded.orthanc_id,
    )
    assert message.headers["correlation_id"] in {r[0] for r in request}


def test_well_formed_unknown_study_id_ends_failed_with_a_dead_letter(
    stack_settings: Settings, webhook_system: System
) -> None:
    webhook_system.ensure(dagster=True, webhook=True)
    unknown = "ffffffff-ffffffff-ffffffff-ffffffff-00000001"
    response = _notify(webhook_system, unknown)
    request_id = response.json()["request_id"]

    final = _final_request_state(webhook_system, request_id)
    assert final["status"] == "failed"
    assert "OrthancNotFound" in str(final["error"])
    assert query("SELECT failed_op, error_type FROM dead_letter WHERE run_id = :run", run=final["run_id"]) == [
        ("extract_study", "OrthancNotFound")
    ]


def test_sensor_webhook_storm_and_both_paths_give_one_version_and_one_event(
    stack_settings: Settings, full_system: System, events: KafkaTap
) -> None:
    full_system.ensure(dagster=True, webhook=True)
    seeded, spec = seed_one(stack_settings, series=1, instances=3)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(
            pool.map(
                lambda _: _notify(full_system, seeded.orthanc_id),
                range(10),
            )
        )
    assert [a.status_code for a in answers] == [202] * 10

    wait_for(lambda: _versions(spec.study_uid), RUN_TIMEOUT, "a version")
    # Let every launched run (10 webhook, 1 Lua, 1 sensor) finish before counting.
    wait_for(lambda: all_requests_finished(seeded.orthanc_id), RUN_TIMEOUT * 2, "all webhook requests to finish")
    assert [v[0] for v in _versions(spec.study_uid)] == [1]
    assert (
        len(events.read_all(key=spec.study_uid, settled=lambda: full_system.settled(seeded.orthanc_id, spec.study_uid)))
        == 1
    )

    # Announcements of one Orthanc state share a run; a request made while the study was
    # still settling may get a second (unchanged) run once it is stable.
    runs = full_system.study_runs(seeded.orthanc_id)
    assert 1 <= len(runs) <= 3 and all(r["status"] == "SUCCESS" for r in runs), runs
    intervals = sorted((float(str(r["startTime"])), float(str(r["endTime"]))) for r in runs)
    for (_, previous_end), (next_start, _) in itertools.pairwise(intervals):
        assert next_start >= previous_end, "two runs of one study overlapped"


def test_sensor_path_alone_ingests_a_seeded_study(
    stack_settings: Settings, full_system: System, events: KafkaTap
) -> None:
    full_system.ensure(dagster=True, webhook=False)  # Orthanc's Lua call fails: only the change feed remains
    _seeded, spec = seed_one(stack_settings, modality="CR")
    wait_for(lambda: _versions(spec.study_uid), RUN_TIMEOUT, "the sensor-triggered version")
    assert _versions(spec.study_uid)[0][:2] == (1, "sensor")
    message = events.read(expected=1, key=spec.study_uid)[0]
    assert message.value["trigger"] == "sensor"


def test_caller_correlation_id_travels_to_run_rows_event_and_logs_while_lua_and_sensor_also_fire(
    stack_settings: Settings, full_system: System, events: KafkaTap
) -> None:
    full_system.ensure(dagster=True, webhook=True)
    seeded, spec = seed_one(stack_settings, series=1, instances=2)
    correlation_id = f"caller-{uuid.uuid4().hex[:16]}"
    response = _notify(full_system, seeded.orthanc_id, correlation_id)
    assert response.status_code == 202 and response.headers["X-Correlation-ID"] == correlation_id
    final = _final_request_state(full_system, response.json()["request_id"])
    assert final["status"] == "succeeded"

    # Orthanc's Lua call (a second request) and the change feed announce the same state.
    wait_for_stable(stack_settings, seeded.orthanc_id)
    wait_for(
        lambda: query("SELECT count(*) FROM ingestion_request WHERE orthanc_id = :id", id=seeded.orthanc_id)[0][0] >= 2,
        RUN_TIMEOUT,
        "Orthanc's own webhook call",
    )
    wait_for(lambda: all_requests_finished(seeded.orthanc_id), RUN_TIMEOUT, "every request to finish")
    time.sleep(12)  # two sensor ticks past the StableStudy change

    messages = events.read_all(
        key=spec.study_uid, settled=lambda: full_system.settled(seeded.orthanc_id, spec.study_uid)
    )
    assert len(messages) == 1, "one event for the study"
    assert messages[0].headers["correlation_id"] == correlation_id
    assert messages[0].value["correlation_id"] == correlation_id
    assert _versions(spec.study_uid) == [(1, "webhook", correlation_id)]
    runs = full_system.study_runs(seeded.orthanc_id)
    run_tags = [{str(t["key"]): str(t["value"]) for t in r["tags"]} for r in runs]  # type: ignore[attr-defined]
    assert any(t.get("dicom/correlation_id") == correlation_id for t in run_tags)
    assert not [t for t in run_tags if t.get("dicom/trigger") == "sensor"], "the sensor launched a second run"
    worker_logs = "".join(p.read_text(errors="replace") for p in full_system.home.glob("worker-*.log"))
    assert correlation_id in worker_logs, "no log line of the run carries the correlation id"
