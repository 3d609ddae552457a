"""Engines, transactions and schema migration."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from dicom_pipeline.errors import DatabaseUnavailable

# Fixed key of the advisory lock that serialises migrations between processes.
MIGRATION_LOCK_KEY = 72_314_001


# A pooled connection unused for this long is pinged before it is handed out.
IDLE_BEFORE_PING_SECONDS = 2.0


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    engine = create_engine(
        url,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": 5, "application_name": "dicom-pipeline"},
    )
    ping_after_idle(engine)
    return engine


def ping_after_idle(engine: Engine) -> None:
    """SQLAlchemy's pessimistic disconnect handling (`pool_pre_ping`), for connections that
    sat idle only: after a PostgreSQL restart a stale connection is replaced instead of
    failing its first query, while work that uses connections back to back (a run storing
    its events, a study's transactions) pays no extra round trip per checkout; pinging every
    checkout was 12 % of a run worker's CPU in a burst of small studies."""

    @event.listens_for(engine, "checkin")
    def _note_last_use(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["last_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("last_used", 0.0) < IDLE_BEFORE_PING_SECONDS:
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:
            # The pool discards this connection and hands out (or opens) another.
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits when the block ends, rolls back on any error.

    Connection-level failures become DatabaseUnavailable, which the ops retry.
    """
    session = sessionmaker(engine, expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except (OperationalError, DBAPIError) as exc:
        session.rollback()
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            raise DatabaseUnavailable(f"PostgreSQL failed: {type(exc.orig).__name__}: {str(exc.orig)[:300]}") from exc
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("dicom_pipeline.db") / "migrations"))
    # Alembic's ini interpolation treats % specially.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


_upgraded: set[str] = set()


def upgrade_schema(url: str) -> None:
    """Apply pending Alembic migrations once per process; safe when several processes race."""
    if url in _upgraded:
        return
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                config = alembic_config(url)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
    except OperationalError as exc:
        raise DatabaseUnavailable(f"PostgreSQL unreachable for migrations: {str(exc.orig)[:300]}") from exc
    _upgraded.add(url)
