"""An idempotent, acks=all producer that reports, per event, whether the broker acknowledged it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from dicom_pipeline.domain.events import EventEnvelope
from dicom_pipeline.kafka.client_config import kafka_client_config
from dicom_pipeline.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    delivered: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)


class EventProducer:
    def __init__(
        self, bootstrap_servers: str, delivery_timeout_seconds: float, client_config: dict[str, str] | None = None
    ) -> None:
        self._timeout = delivery_timeout_seconds
        self._producer = Producer(
            {
                **(client_config or {}),
                "bootstrap.servers": bootstrap_servers,
                # Idempotence makes librdkafka's own retries safe: the broker drops resends.
                "enable.idempotence": True,
                "acks": "all",
                "delivery.timeout.ms": int(delivery_timeout_seconds * 1000),
                "linger.ms": 5,
                "compression.type": "lz4",
                "message.max.bytes": 8 * 1024 * 1024,
                "logger": log,
            }
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> EventProducer:
        return cls(
            settings.kafka_bootstrap_servers, settings.kafka_delivery_timeout_seconds, kafka_client_config(settings)
        )

    def send(self, envelopes: list[EventEnvelope]) -> DeliveryReport:
        """Produce every envelope and wait until each is acknowledged or has failed."""
        report = DeliveryReport()

        def on_delivery(event_id: str) -> Callable[[KafkaError | None, Message], None]:
            def callback(error: KafkaError | None, message: Message) -> None:
                if error is None:
                    report.delivered.add(event_id)
                else:
                    report.failed[event_id] = str(error)

            return callback

        for envelope in envelopes:
            headers: list[tuple[str, str | bytes | None]] = [
                (name, value.encode()) for name, value in envelope.headers.items()
            ]
            headers.append(("event_id", envelope.event_id.encode()))
            try:
                self._producer.produce(
                    envelope.topic,
                    key=envelope.key.encode(),
                    value=json.dumps(envelope.payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
                    headers=headers,
                    on_delivery=on_delivery(envelope.event_id),
                )
            except (BufferError, KafkaException) as exc:
                report.failed[envelope.event_id] = f"{type(exc).__name__}: {exc}"
            self._producer.poll(0)
        # delivery.timeout.ms bounds each message; the extra margin lets the last callbacks run.
        self._producer.flush(self._timeout + 5)
        for envelope in envelopes:
            if envelope.event_id not in report.delivered and envelope.event_id not in report.failed:
                report.failed[envelope.event_id] = "no acknowledgement before the delivery timeout"
        return report
