"""Kafka killed and PostgreSQL restarted in the middle of ingestion: nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest
from dicom_pipeline_dev.stack.control import Stack
from dicom_pipeline_dev.stack.kafka import KafkaService
from dicom_pipeline_dev.stack.postgres import PostgresService

from dicom_pipeline.ingestion.batch import BatchReport, ingest_studies
from dicom_pipeline.kafka.outbox import publish_pending_events
from dicom_pipeline.runtime import get_runtime, reset_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import KafkaTap, query, seed_one, versions_per_study

pytestmark = pytest.mark.integration


def _in_background(fn: object) -> tuple[threading.Thread, list[BatchReport]]:
    results: list[BatchReport] = []
    thread = threading.Thread(target=lambda: results.append(fn()))  # type: ignore[operator]
    thread.start()
    return thread, results


def _wait_for_versions(study_uids: list[str], at_least: int) -> None:
    for _ in range(600):
        if sum(versions_per_study(study_uids).values()) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} versions after 60 s: the batch never got going")


def test_kafka_killed_during_20_ingests_every_study_one_version_and_every_event_delivered(
    stack_settings: Settings, runtime_env: pytest.MonkeyPatch, events: KafkaTap
) -> None:
    runtime_env.setenv("DICOM_PIPELINE_KAFKA_DELIVERY_TIMEOUT_SECONDS", "5")
    reset_runtime()
    seeded = [seed_one(stack_settings, modality="DX", size=16) for _ in range(20)]
    uids = [spec.study_uid for _, spec in seeded]
    kafka = KafkaService(Stack.from_settings(stack_settings).layout)

    thread, reports = _in_background(
        lambda: ingest_studies(
            get_runtime(), [s.orthanc_id for s, _ in seeded], trigger="fault-kafka", run_id=None, concurrency=2
        )
    )
    _wait_for_versions(uids, 3)
    assert sum(versions_per_study(uids).values()) < len(uids), "the batch finished before the fault"
    pid = kafka.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(20)
    kafka.start()
    thread.join()

    # Whatever the runs could not send, the relay sends now.
    publish_pending_events(get_runtime().engine, get_runtime().producer)
    assert versions_per_study(uids) == dict.fromkeys(uids, 1), "each study exactly one version"
    assert query(
        "SELECT count(*) FROM outbox WHERE study_instance_uid = ANY(:uids) AND published_at IS NULL", uids=uids
    ) == [(0,)]
    expected_ids = {
        str(r[0])
        for r in query(
            "SELECT v.event_id FROM study_version v JOIN study s ON s.id = v.study_id "
            "WHERE s.study_instance_uid = ANY(:uids)",
            uids=uids,
        )
    }
    seen: Counter[str] = Counter()
    for _ in range(8):
        for message in events.read(expected=40, timeout=5):
            if message.key in uids:
                seen[message.value["event_id"]] += 1
        if set(seen) >= expected_ids:
            break
    assert set(seen) == expected_ids, "every version's event reached the topic"
    duplicates = {event_id: n for event_id, n in seen.items() if n > 1}
    print(f"kafka fault: {len(expected_ids)} events, {sum(seen.values())} deliveries, duplicates {duplicates}")
    # The fault hit work in flight: some studies' events could not be sent at first.
    retried = {
        str(r[0])
        for r in query(
            "SELECT event_id FROM outbox WHERE publish_attempts > 0 AND study_instance_uid = ANY(:uids)", uids=uids
        )
    }
    assert retried, "no publish met the dead broker: the fault missed the work"
    # At-least-once: only an event whose first send went unacknowledged may arrive twice.
    assert set(duplicates) <= retried, "an event acknowledged at once was delivered twice"
    assert query("SELECT count(*) FROM dead_letter WHERE study_instance_uid = ANY(:uids)", uids=uids) == [(0,)]
    assert reports and reports[0].counts["created"] == 20, "a study failed because Kafka was down"


def test_postgres_restarted_mid_batch_loses_and_duplicates_nothing(stack_settings: Settings) -> None:
    seeded = [seed_one(stack_settings, modality="CT", series=1, instances=3, size=32) for _ in range(12)]
    uids = [spec.study_uid for _, spec in seeded]
    postgres = PostgresService(Stack.from_settings(stack_settings).layout)
    reset_runtime()

    thread, reports = _in_background(
        lambda: ingest_studies(
            get_runtime(), [s.orthanc_id for s, _ in seeded], trigger="fault-postgres", run_id=None, concurrency=2
        )
    )
    _wait_for_versions(uids, 2)
    assert sum(versions_per_study(uids).values()) < len(uids), "the batch finished before the fault"
    postgres.stop()
    time.sleep(2)
    postgres.start()
    thread.join()

    report = reports[0]
    failed = [r.orthanc_id for r in report.failures]
    if failed:  # only a retry budget ran out; a second pass must complete them
        ingest_studies(get_runtime(), failed, trigger="fault-postgres-redrive", run_id=None)
    assert versions_per_study(uids) == dict.fromkeys(uids, 1)
    assert query(
        "SELECT count(*), count(DISTINCT (i.study_id, i.sop_instance_uid)) FROM instance i "
        "JOIN study s ON s.id = i.study_id WHERE s.study_instance_uid = ANY(:uids)",
        uids=uids,
    ) == [(36, 36)]
    staging = get_runtime().staging_root
    assert not [p for s, _ in seeded for p in staging.glob(f"{s.orthanc_id}-*")], "no staging left behind"
