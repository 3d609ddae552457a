"""An idempotent, acks=all producer that reports, per event, whether the broker acknowledged it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import SerializationError
from opentelemetry.trace import SpanKind

from dicom_pipeline.domain.events import EventEnvelope
from dicom_pipeline.kafka.client_config import kafka_client_config
from dicom_pipeline.kafka.cloudevents import cloudevent_headers, event_source
from dicom_pipeline.kafka.contract import EventSerializer, plain_json, registry_client, schema_of, schema_uri
from dicom_pipeline.settings import Settings
from dicom_pipeline.tracing import span, traceparent_of

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    delivered: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)


class EventProducer:
    def __init__(
        self,
        bootstrap_servers: str,
        delivery_timeout_seconds: float,
        client_config: dict[str, str] | None = None,
        *,
        source: str = "urn:dicom-pipeline",
        serializer: EventSerializer | None = None,
    ) -> None:
        self._timeout = delivery_timeout_seconds
        self._source = source
        self._serializer = serializer
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
        client = registry_client(settings)
        return cls(
            settings.kafka_bootstrap_servers,
            settings.kafka_delivery_timeout_seconds,
            kafka_client_config(settings),
            source=event_source(settings),
            serializer=EventSerializer(client, settings) if client is not None else None,
        )

    def _value_and_headers(
        self, envelope: EventEnvelope, traceparent: str | None = None
    ) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
        stored = {name: value for name, value in envelope.headers.items() if name != "traceparent"}
        headers: list[tuple[str, str | bytes | None]] = [(name, value.encode()) for name, value in stored.items()]
        if traceparent:
            # The produce's own span (W3C), and the same as the CloudEvents extension.
            headers += [("traceparent", traceparent.encode()), ("ce_traceparent", traceparent.encode())]
        headers.append(("event_id", envelope.event_id.encode()))
        if self._serializer is not None:
            # Validated against the registered schema; its id goes into a header.
            value, dataschema = self._serializer(envelope.topic, envelope.payload, headers)
        else:
            value, dataschema = plain_json(envelope.payload), schema_uri(schema_of(envelope.payload))
        headers.extend(
            cloudevent_headers(envelope.event_id, envelope.payload, source=self._source, dataschema=dataschema)
        )
        return value, headers

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
            try:
                with span(
                    f"{envelope.topic} publish",
                    parent=envelope.headers.get("traceparent"),
                    kind=SpanKind.PRODUCER,
                    attributes={"messaging.system": "kafka", "messaging.destination.name": envelope.topic},
                ) as produce:
                    value, headers = self._value_and_headers(envelope, traceparent_of(produce))
                    self._producer.produce(
                        envelope.topic,
                        key=envelope.key.encode(),
                        value=value,
                        headers=headers,
                        on_delivery=on_delivery(envelope.event_id),
                    )
            except (BufferError, KafkaException) as exc:
                report.failed[envelope.event_id] = f"{type(exc).__name__}: {exc}"
            except (SerializationError, SchemaRegistryError) as exc:
                # Not registered (run `dicom-pipeline schemas register`), invalid, or the
                # registry unreachable: the event stays in the outbox and is sent again later.
                report.failed[envelope.event_id] = f"schema registry: {type(exc).__name__}: {exc}"
            self._producer.poll(0)
        # delivery.timeout.ms bounds each message; the extra margin lets the last callbacks run.
        self._producer.flush(self._timeout + 5)
        for envelope in envelopes:
            if envelope.event_id not in report.delivered and envelope.event_id not in report.failed:
                report.failed[envelope.event_id] = "no acknowledgement before the delivery timeout"
        return report
