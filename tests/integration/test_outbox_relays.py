"""Two outbox relays at once (two webhook replicas, a relay run and a study run...) publish
every pending row exactly once: rows are claimed FOR UPDATE SKIP LOCKED until published."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter

import pytest

from dicom_pipeline.domain.events import dead_letter_payload
from dicom_pipeline.kafka.outbox import PublishResult, publish_pending_events
from dicom_pipeline.kafka.producer import EventProducer
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import KafkaTap, execute, query

pytestmark = pytest.mark.integration

ROWS = 60


def test_two_concurrent_relays_publish_each_outbox_row_once(stack_settings: Settings, dead_letters: KafkaTap) -> None:
    key = f"relay-test-{uuid.uuid4().hex[:12]}"
    ids = [uuid.uuid4() for _ in range(ROWS)]
    for number, event_id in enumerate(ids, start=1):
        # A valid dead letter: the producer validates every message against its schema.
        payload = dead_letter_payload(
            event_id=str(event_id),
            dead_letter_id=number,
            correlation_id="relay-test",
            trigger=None,
            study_instance_uid=None,
            orthanc_id=None,
            instance=None,
            run_id=None,
            failed_op="relay_test",
            error_type="RelayTest",
            error_message="a row of the concurrent relay test",
            transient=False,
            attempts=1,
        )
        execute(
            "INSERT INTO outbox (event_id, topic, message_key, payload, headers, publish_attempts) "
            "VALUES (:id, :topic, :key, CAST(:payload AS jsonb), CAST(:headers AS jsonb), 0)",
            id=event_id,
            topic=stack_settings.kafka_dlq_topic,
            key=key,
            payload=json.dumps(payload),
            headers='{"correlation_id": "relay-test", "event_type": "ingestion.failed", "schema_version": "1.0"}',
        )
    engine = get_runtime().engine
    results: list[PublishResult] = []
    start = threading.Barrier(2)

    def relay() -> None:
        producer = EventProducer.from_settings(stack_settings)  # each relay its own producer
        start.wait()
        results.append(publish_pending_events(engine, producer, event_ids=[str(i) for i in ids], batch_size=7))

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert len(results) == 2 and all(r.failed == 0 for r in results)
    assert sum(r.published for r in results) == ROWS, [r.published for r in results]
    assert all(r.published > 0 for r in results), "the two relays did not overlap: nothing was proven"
    assert query("SELECT count(*) FROM outbox WHERE event_id = ANY(:ids) AND published_at IS NULL", ids=ids) == [(0,)]
    delivered = Counter(m.headers["event_id"] for m in dead_letters.read_all(key=key))
    assert set(delivered) == {str(i) for i in ids}
    assert max(delivered.values()) == 1, "a row was published twice"
    execute("DELETE FROM outbox WHERE event_id = ANY(:ids)", ids=ids)
