"""Dagster's own PostgreSQL storage with pooled connections, and its schema migration.

dagster-postgres builds its run, event-log and schedule storage engines with NullPool:
every query opens a new PostgreSQL session (fork, authentication, catalogue warm-up) and
closes it. Measured through the whole system before this module: 108 sessions and 0.9 s of
PostgreSQL CPU per one-instance study run, and 16 sessions per second with nothing to do
(bench/RESULTS.md, 2026-12-02). `PooledPostgresStorage` is the same storage, whose three
parts share one pooled engine per process and database: sessions stay open and are reused,
by every DagsterInstance the process builds (the Celery run worker builds one per run).

Chosen over PgBouncer in front of NullPool: a pooler takes the work off PostgreSQL but not
off the client, which still connects and authenticates (SCRAM) per query; a pool in the
process does neither, and needs no further service. A connection that sat idle is pinged
before use (`ping_after_idle`): one after a PostgreSQL restart is replaced, not failed,
while a run storing its events back to back pays no round trip for it (pinging every
checkout was 12 % of a worker's CPU in a burst).

Every process that builds the instance from `dagster_home/dagster.yaml` gets it: webserver,
daemon, code server, run workers. `should_autocreate_tables: false` there keeps each of
them from checking the schema (6 sessions, ~45 ms per instance); `migrate_dagster_schema`
(`dicom-pipeline db upgrade`, `stack up`, compose's migration job) creates or migrates it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import dagster._check as check
from dagster import Field, IntSource
from dagster._serdes import ConfigurableClassData
from dagster_postgres import (
    DagsterPostgresStorage,
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
from sqlalchemy import Engine

from dicom_pipeline.db.engine import ping_after_idle

DEFAULT_POOL_SIZE = 4
DEFAULT_MAX_OVERFLOW = 8

_engines: dict[tuple[str, int], Engine] = {}
_engines_lock = threading.Lock()


def shared_engine(url: str, token_provider: Any, pool_size: int, max_overflow: int) -> Engine:
    """One pooled engine per database and process. Keyed by pid too: a forked child (a
    Celery pool process) must not use the connections it inherited from its parent."""
    key = (url, os.getpid())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = create_pg_engine(
                url,
                token_provider,
                isolation_level="AUTOCOMMIT",  # as dagster-postgres's own engines
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_recycle=3600,
            )
            ping_after_idle(engine)
            _engines[key] = engine
        return engine


class PooledPostgresStorage(DagsterPostgresStorage):
    """`storage: custom: {module: dicom_pipeline.dagster_storage, class: PooledPostgresStorage}`
    takes dagster-postgres's `postgres` storage config, plus `pool_size` and `max_overflow`."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        max_overflow: int = DEFAULT_MAX_OVERFLOW,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        engine = shared_engine(postgres_url, token_provider, pool_size, max_overflow)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            # The NullPool engine each built is never connected (no schema check): replaced.
            storage._engine.dispose()
            storage._engine = engine

    @classmethod
    def config_type(cls) -> Any:
        schema = dict(check.is_dict(super().config_type()))
        schema["pool_size"] = Field(IntSource, is_required=False, default_value=DEFAULT_POOL_SIZE)
        schema["max_overflow"] = Field(IntSource, is_required=False, default_value=DEFAULT_MAX_OVERFLOW)
        return schema

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
            pool_size=config_value.get("pool_size", DEFAULT_POOL_SIZE),
            max_overflow=config_value.get("max_overflow", DEFAULT_MAX_OVERFLOW),
        )


def migrate_dagster_schema(url: str) -> None:
    """Create Dagster's tables in an empty database, or migrate them to this version's.

    Dagster's own code does it: storages built with `should_autocreate_tables` create and
    stamp a fresh schema; `upgrade()` applies its Alembic migrations to an older one."""
    for part in (PostgresRunStorage, PostgresEventLogStorage, PostgresScheduleStorage):
        storage = part(url, should_autocreate_tables=True)
        storage.upgrade()
        storage.dispose()
    _start_run_retry_cursors(url)


def _start_run_retry_cursors(url: str) -> None:
    """Where the daemon's run-retry consumer starts reading, set where it would set it.

    On a fresh instance the consumer finds no cursor, starts at the newest event (so that
    enabling it retries no old run) and says so as a warning on every first start: "No
    cursor for event type RUN_FAILURE, ignoring older events". Recorded here, with the
    same value, the first start is quiet; a cursor already there is left alone."""
    from dagster._daemon.auto_run_reexecution.event_log_consumer import DAGSTER_EVENT_TYPES, _create_cursor_key

    runs = PostgresRunStorage(url, should_autocreate_tables=False)
    events = PostgresEventLogStorage(url, should_autocreate_tables=False)
    try:
        keys = {_create_cursor_key(event_type) for event_type in DAGSTER_EVENT_TYPES}
        missing = keys - set(runs.get_cursor_values(keys))
        if missing:
            newest = str(events.get_maximum_record_id() or 0)
            runs.set_cursor_values(dict.fromkeys(missing, newest))
    finally:
        runs.dispose()
        events.dispose()
