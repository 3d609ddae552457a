"""Housekeeping on the real PostgreSQL: the relay launches only when events wait; old runs go."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import dagster as dg
import pytest

from dicom_pipeline.defs.maintenance import outbox_relay_sensor, purge_old_runs
from dicom_pipeline.defs.resources import resources_from_settings
from dicom_pipeline.settings import Settings
from tests.helpers import execute, query

pytestmark = pytest.mark.integration


def _tick(instance: dg.DagsterInstance, settings: Settings) -> dg.RunRequest | dg.SkipReason:
    with dg.build_sensor_context(instance=instance, resources=resources_from_settings(settings)) as context:
        result = outbox_relay_sensor(context)
    assert isinstance(result, dg.RunRequest | dg.SkipReason)
    return result


@pytest.fixture()
def quiet_outbox(stack_settings: Settings) -> Iterator[None]:
    """Rows other tests left pending are put aside (published_at set) and given back after."""
    marker = dt.datetime(1999, 12, 31, tzinfo=dt.UTC)
    execute("UPDATE outbox SET published_at = :m WHERE published_at IS NULL", m=marker)
    yield
    execute("UPDATE outbox SET published_at = NULL WHERE published_at = :m", m=marker)


def test_relay_sensor_is_idle_on_an_empty_outbox_and_launches_once_events_wait(
    stack_settings: Settings, quiet_outbox: None
) -> None:
    with dg.instance_for_test() as instance:
        idle = _tick(instance, stack_settings)
        assert isinstance(idle, dg.SkipReason) and "empty" in str(idle.skip_message)

        event_id = uuid.uuid4()
        execute(
            "INSERT INTO outbox (event_id, topic, message_key, payload, headers, created_at, publish_attempts) "
            "VALUES (:id, 'dicom.metadata.v1', 'k', '{}', '{}', now() - interval '5 seconds', 0)",
            id=event_id,
        )
        try:
            recent = _tick(instance, stack_settings)
            assert isinstance(recent, dg.SkipReason) and "recent" in str(recent.skip_message)
            execute("UPDATE outbox SET created_at = now() - interval '2 minutes' WHERE event_id = :id", id=event_id)
            waiting = _tick(instance, stack_settings)
            assert isinstance(waiting, dg.RunRequest)
            assert waiting.tags["dicom/pending_events"] == "1"
        finally:
            execute("DELETE FROM outbox WHERE event_id = :id", id=event_id)
    assert query("SELECT count(*) FROM outbox WHERE event_id = :id", id=event_id) == [(0,)]


@dg.op
def _noop() -> None:
    return None


@dg.op
def _boom() -> None:
    raise RuntimeError("fails on purpose")


@dg.job
def _succeeds() -> None:
    _noop()


@dg.job
def _fails() -> None:
    _boom()


def test_old_runs_are_purged_failed_ones_kept_longer_and_recent_ones_stay() -> None:
    with dg.instance_for_test() as instance:
        ok = _succeeds.execute_in_process(instance=instance).run_id
        failed = _fails.execute_in_process(instance=instance, raise_on_error=False).run_id
        now = dt.datetime.now(dt.UTC)

        assert purge_old_runs(instance, now, keep_days=30, keep_failed_days=90) == {
            "succeeded_or_canceled": 0,
            "failed": 0,
        }
        assert instance.has_run(ok) and instance.has_run(failed), "recent runs stay"

        in_31_days = purge_old_runs(instance, now + dt.timedelta(days=31), keep_days=30, keep_failed_days=90)
        assert in_31_days == {"succeeded_or_canceled": 1, "failed": 0}
        assert not instance.has_run(ok) and instance.has_run(failed)
        assert instance.all_logs(ok) == [], "the run's event log goes with it"

        in_91_days = purge_old_runs(instance, now + dt.timedelta(days=91), keep_days=30, keep_failed_days=90)
        assert in_91_days == {"succeeded_or_canceled": 0, "failed": 1}
        assert not instance.has_run(failed)
