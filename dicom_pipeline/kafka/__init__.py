"""Kafka: the idempotent producer and the outbox publisher."""
