"""Scenario 1 through the real daemon: Kafka SIGKILLed while 20 webhook-triggered study runs
go through, restarted 20 s later. Every study one version, every run and request succeeded
(an event Kafka could not take waits in the outbox, it does not fail the study), every event
on the topic, nothing left in the outbox, no dead letter."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicom_pipeline_dev.stack.control import Stack
from dicom_pipeline_dev.stack.kafka import KafkaService

from dicom_pipeline.settings import Settings
from tests.e2e.system import System, running_system, wait_for
from tests.helpers import KafkaTap, clear_change_log, query, seed_one, versions_per_study

pytestmark = pytest.mark.e2e

STUDIES = 20
TIMEOUT = 300  # a hang guard only


@pytest.fixture(scope="module")
def broker_system(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    clear_change_log(stack_settings)
    with running_system(stack_settings, Path(tmp_path_factory.mktemp("broker-system")), sensor=False) as system:
        # A publish gives up (leaving its event to the relay) sooner.
        system.env["DICOM_PIPELINE_KAFKA_DELIVERY_TIMEOUT_SECONDS"] = "5"
        system.start_dagster()
        system.start_webhook()
        yield system


def _request_states(orthanc_ids: list[str]) -> Counter[str]:
    rows = query("SELECT status FROM ingestion_request WHERE orthanc_id = ANY(:ids)", ids=orthanc_ids)
    return Counter(str(r[0]) for r in rows)


def test_kafka_killed_while_the_daemon_ingests_20_studies(
    stack_settings: Settings, broker_system: System, events: KafkaTap
) -> None:
    seeded = [seed_one(stack_settings, modality="DX", size=16) for _ in range(STUDIES)]
    orthanc_ids = [s.orthanc_id for s, _ in seeded]
    uids = {spec.study_uid for _, spec in seeded}
    kafka = KafkaService(Stack.from_settings(stack_settings).layout)

    # Orthanc's own OnStableStudy calls reach the webhook; kill the broker once runs are flowing.
    wait_for(lambda: _request_states(orthanc_ids)["succeeded"] >= 2, TIMEOUT, "the first runs to succeed")
    before_kill = _request_states(orthanc_ids)
    pid = kafka.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    try:
        wait_for(lambda: kafka.running_pid() is None, 30, "the broker to be gone")
        time.sleep(20)
    finally:
        kafka.start()
    restarted = time.monotonic()

    def all_finished() -> bool:
        states = _request_states(orthanc_ids)
        return sum(states.values()) == STUDIES and states["succeeded"] + states["failed"] == STUDIES

    wait_for(all_finished, TIMEOUT, "every request to finish")
    # The fault hit work in flight: some runs tried to publish while the broker was gone.
    failed_publishes = query(
        "SELECT count(*) FROM outbox WHERE publish_attempts > 0 AND study_instance_uid = ANY(:uids)", uids=list(uids)
    )[0][0]
    assert failed_publishes > 0, "no run published while Kafka was down: the fault missed the work"
    # Those events wait for the outbox_relay schedule (every minute).
    wait_for(
        lambda: (
            query(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL AND study_instance_uid = ANY(:uids)",
                uids=list(uids),
            )
            == [(0,)]
        ),
        TIMEOUT,
        "the outbox to drain",
    )
    drained = time.monotonic()

    assert versions_per_study(list(uids)) == dict.fromkeys(uids, 1)

    expected_ids = {
        str(r[0])
        for r in query(
            "SELECT v.event_id FROM study_version v JOIN study s ON s.id = v.study_id "
            "WHERE s.study_instance_uid = ANY(:uids)",
            uids=list(uids),
        )
    }
    orthanc_of = {spec.study_uid: s.orthanc_id for s, spec in seeded}
    everything = events.read_all(settled=lambda: all(broker_system.settled(orthanc_of[uid], uid) for uid in uids))
    deliveries = [m for m in everything if m.key in uids]
    seen = Counter(str(m.value["event_id"]) for m in deliveries)
    assert set(seen) == expected_ids, "an event id is missing on the topic"
    duplicates = sum(n - 1 for n in seen.values())
    # At-least-once: only an event whose first send went unacknowledged (the broker died
    # after writing it) may reach the topic twice; consumers dedupe it by event_id.
    retried = {
        str(r[0])
        for r in query(
            "SELECT event_id FROM outbox WHERE publish_attempts > 0 AND study_instance_uid = ANY(:uids)",
            uids=list(uids),
        )
    }
    assert {e for e, n in seen.items() if n > 1} <= retried, "an event acknowledged at once was delivered twice"

    assert _request_states(orthanc_ids) == Counter({"succeeded": STUDIES}), "a request did not end succeeded"
    runs = [run for oid in orthanc_ids for run in broker_system.study_runs(oid)]
    assert runs and all(run["status"] == "SUCCESS" for run in runs), "a run failed or is stuck"
    assert query("SELECT count(*) FROM dead_letter WHERE orthanc_id = ANY(:ids)", ids=orthanc_ids) == [(0,)]
    print(
        f"scenario 1 (daemon): {dict(before_kill)} before the kill; broker down {restarted - killed:.1f}s; "
        f"{len(runs)} runs ({Counter(str(r['status']) for r in runs)}); {failed_publishes} event(s) left to the relay; "
        f"outbox drained {drained - restarted:.1f}s after the restart; {len(expected_ids)} event ids, "
        f"{len(deliveries)} deliveries, {duplicates} duplicate(s)"
    )
