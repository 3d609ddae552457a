"""Helpers for tests against the real stack: seeding, ingesting, reading Kafka and the database."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

import dagster as dg
from confluent_kafka import Consumer, TopicPartition
from dicom_pipeline_dev.seed.runner import SeededStudy, describe_study, lookup_study_id, orthanc_client
from dicom_pipeline_dev.seed.send import upload_rest
from dicom_pipeline_dev.seed.synth import SeedPlan, StudySpec, build_instances, plan_studies
from pydicom.dataset import Dataset
from sqlalchemy import text

from dicom_pipeline.defs.change_feed import build_change_feed_sensor
from dicom_pipeline.defs.resources import resources_from_settings
from dicom_pipeline.kafka.client_config import kafka_client_config
from dicom_pipeline.local_runs import ingest_in_process
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings, get_settings


def unique_seed() -> int:
    return uuid.uuid4().int % 1_000_000_000


def made_up_orthanc_id() -> str:
    """A well-formed Orthanc study id that no study in Orthanc has."""
    return "-".join(secrets.token_hex(4) for _ in range(5))


def seed_one(
    settings: Settings,
    *,
    modality: str = "CT",
    series: int = 2,
    instances: int = 3,
    size: int = 32,
    charset: str = "ISO_IR 192",
    seed: int | None = None,
) -> tuple[SeededStudy, StudySpec]:
    """One study through REST; returns what was seeded and its spec (to add instances later)."""
    plan = SeedPlan(
        studies=1,
        modalities=(modality,),
        series_per_study=series,
        instances_per_series=instances,
        rows=size,
        columns=size,
        charsets=(charset,),
        seed=seed if seed is not None else unique_seed(),
    )
    spec = plan_studies(plan)[0]
    with orthanc_client(settings) as client:
        upload_rest(client, build_instances(spec, plan.seed))
        return describe_study(client, spec), spec


def upload(settings: Settings, datasets: list[Dataset] | Iterator[Dataset]) -> list[str]:
    with orthanc_client(settings) as client:
        return upload_rest(client, datasets)


def orthanc_study_id(settings: Settings, study_uid: str) -> str:
    with orthanc_client(settings) as client:
        return lookup_study_id(client, study_uid)


def add_instances(settings: Settings, spec: StudySpec, per_series: int) -> StudySpec:
    """Send the study again with more instances per series; Orthanc keeps the ones it has."""
    bigger = replace(spec, instances_per_series=per_series)
    upload(settings, build_instances(bigger, 1))
    return bigger


def ingest(orthanc_id: str, trigger: str = "test", correlation_id: str | None = None) -> dict[str, Any]:
    return ingest_in_process(
        orthanc_id, trigger=trigger, correlation_id=correlation_id, instance=dg.DagsterInstance.ephemeral()
    )


def change_feed_tick(cursor: str | None, settings: Settings | None = None) -> dg.SensorResult:
    """One tick of the change-feed sensor, with resources for `settings` (default: the stack's)."""
    sensor = build_change_feed_sensor(running=True)
    resources = resources_from_settings(settings or get_settings())
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context,
    ):
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def query(sql: str, **params: Any) -> list[Any]:
    with get_runtime().engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def all_requests_finished(orthanc_id: str) -> bool:
    """Every webhook request for the study has succeeded or failed (and there is one)."""
    states = [r[0] for r in query("SELECT status FROM ingestion_request WHERE orthanc_id = :id", id=orthanc_id)]
    return bool(states) and all(state in ("succeeded", "failed") for state in states)


def outbox_published(study_uid: str) -> bool:
    """No event of the study waits in the outbox: each one it has is on its topic."""
    rows = query("SELECT count(*) FROM outbox WHERE study_instance_uid = :uid AND published_at IS NULL", uid=study_uid)
    return rows == [(0,)]


def execute(sql: str, **params: Any) -> int:
    """A committed change (for tests that must clean up after themselves); rows affected."""
    with get_runtime().engine.begin() as conn:
        return int(conn.execute(text(sql), params).rowcount)


@dataclass
class KafkaMessage:
    key: str
    value: dict[str, Any]
    headers: dict[str, str]
    raw_value: bytes = b""  # as on the wire, for a consumer's own deserializer
    raw_headers: tuple[tuple[str, bytes], ...] = ()


class KafkaTap:
    """Reads a topic from the offsets it had when the tap was opened."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                **kafka_client_config(settings),
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": f"test-tap-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        metadata = self.consumer.list_topics(topic, timeout=10)
        partitions = list(metadata.topics[topic].partitions)
        self.start = []
        for partition in partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            self.start.append(TopicPartition(topic, partition, high))
        self.consumer.assign(self.start)
        # Per partition, the offset of the next message this tap reads.
        self._next = {tp.partition: tp.offset for tp in self.start}

    def read(self, expected: int, timeout: float = 20.0, key: str | None = None) -> list[KafkaMessage]:
        """Messages until `expected` (for `key`) arrived, or the timeout passed."""
        found: list[KafkaMessage] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(found) < expected:
            decoded = self._poll()
            if decoded is not None and (key is None or decoded.key == key):
                found.append(decoded)
        return found

    def read_all(
        self, *, key: str | None = None, settled: Callable[[], object] = lambda: True, timeout: float = 120.0
    ) -> list[KafkaMessage]:
        """Every message (for `key`) not read yet that the system will ever send: once
        `settled()` holds (nothing is left that could send one: no event waiting in the
        outbox, no run in progress), those are the ones up to the topic's end. Where
        `read(expected=n + 1, timeout=t)` shows that no n+1th message came within t, this
        knows, without waiting t. `timeout` is a hang guard."""
        deadline = time.monotonic() + timeout
        while not settled():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.topic}: the system did not settle within {timeout}s")
            time.sleep(0.5)
        ends = {
            partition: self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=10)[1]
            for partition in self._next
        }
        found: list[KafkaMessage] = []
        while any(self._next[partition] < end for partition, end in ends.items()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.topic}: did not reach the topic's end {ends} within {timeout}s")
            decoded = self._poll()
            if decoded is not None and (key is None or decoded.key == key):
                found.append(decoded)
        return found

    def _poll(self) -> KafkaMessage | None:
        message = self.consumer.poll(0.5)
        if message is None or message.error() is not None:
            return None
        self._next[int(message.partition() or 0)] = int(message.offset() or 0) + 1
        raw_headers = cast(list[tuple[str, bytes]], message.headers() or [])
        raw_value = bytes(message.value() or b"{}")
        return KafkaMessage(
            key=bytes(message.key() or b"").decode(),
            value=json.loads(raw_value),
            headers={name: bytes(value or b"").decode("utf-8", "replace") for name, value in raw_headers},
            raw_value=raw_value,
            raw_headers=tuple((name, bytes(value or b"")) for name, value in raw_headers),
        )

    def close(self) -> None:
        self.consumer.close()


def versions_per_study(study_uids: list[str]) -> dict[str, int]:
    rows = query(
        "SELECT s.study_instance_uid, count(v.id) FROM study s JOIN study_version v ON v.study_id = s.id "
        "WHERE s.study_instance_uid = ANY(:uids) GROUP BY s.study_instance_uid",
        uids=study_uids,
    )
    return {str(row[0]): int(row[1]) for row in rows}


def stored_sop_uids(study_uid: str) -> set[str]:
    rows = query(
        "SELECT i.sop_instance_uid FROM instance i JOIN study s ON s.id = i.study_id WHERE s.study_instance_uid = :uid",
        uid=study_uid,
    )
    return {row[0] for row in rows}


def wait_for_stable(settings: Settings, orthanc_id: str, timeout: float = 30.0) -> None:
    """Orthanc marks a study stable StableAge seconds after its last instance."""
    deadline = time.monotonic() + timeout
    with orthanc_client(settings) as client:
        while time.monotonic() < deadline:
            if client.get(f"/studies/{orthanc_id}").json().get("IsStable"):
                return
            time.sleep(0.5)
    raise AssertionError(f"study {orthanc_id} did not become stable within {timeout}s")


def clear_change_log(settings: Settings) -> None:
    """Empty Orthanc's change log so a new sensor starts from now, not from earlier studies."""
    with orthanc_client(settings) as client:
        client.delete("/changes").raise_for_status()


def unused_study_dates(days: int) -> list[dt.date]:
    """`days` consecutive dates on which Orthanc holds no study yet, so per-date counts are
    exactly a test's own (other tests, and pydicom's bundled files, bring their own dates).
    Within 2000-2024: the backfill's daily partitions start in 2000 and end today."""
    with get_runtime().orthanc() as orthanc:
        for _ in range(20):
            base = dt.date(2000, 1, 1) + dt.timedelta(days=unique_seed() % 9000)
            dates = [base + dt.timedelta(days=i) for i in range(days)]
            if not any(orthanc.find_studies({"StudyDate": d.strftime("%Y%m%d")}) for d in dates):
                return dates
    raise AssertionError("found no free study dates in 20 tries")
