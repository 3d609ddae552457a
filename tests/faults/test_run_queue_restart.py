"""Redis (the run queue) restarted while runs are queued in it and one is in flight.

Six studies, one worker process: Orthanc's webhook calls start six runs, the worker executes
one at a time, the rest wait in Redis. Redis is stopped and started again meanwhile.
Nothing may be lost: every study ends with exactly one version and one event, and every
webhook request succeeded (a run that lost its queue entry fails by the start timeout and is
retried by the instance).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicom_pipeline_dev.stack.control import Stack
from dicom_pipeline_dev.stack.redis import RedisService

from dicom_pipeline.settings import Settings
from tests.e2e.system import System, running_system, wait_for
from tests.helpers import KafkaTap, clear_change_log, query, seed_one, versions_per_study

pytestmark = pytest.mark.e2e

STUDIES = 6
TIMEOUT = 420  # a hang guard only: a run that lost its queue entry waits for the start timeout
# A run that lost its queue entry is failed by the start timeout and retried: the test waits it
# out. The instance's 180 s leaves room for a long queue; here the last of six small runs waits
# behind five of a few seconds each, so 60 s keeps a wide margin and saves CI two minutes.
START_TIMEOUT = 60


@pytest.fixture(scope="module")
def queue_system(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    clear_change_log(stack_settings)
    folder = Path(tmp_path_factory.mktemp("queue-system"))
    with running_system(stack_settings, folder, sensor=False, start_timeout_seconds=START_TIMEOUT) as system:
        system.start_dagster(workers=0)
        system.start_worker("w1", concurrency=1)
        system.start_webhook()
        yield system


def _run_statuses(system: System, orthanc_ids: list[str]) -> Counter[str]:
    return Counter(str(run["status"]) for oid in orthanc_ids for run in system.study_runs(oid))


def test_redis_restarted_with_runs_queued_and_in_flight_loses_no_study(
    stack_settings: Settings, queue_system: System, events: KafkaTap
) -> None:
    seeded = [seed_one(stack_settings, modality="CT", series=1, instances=20, size=256) for _ in range(STUDIES)]
    orthanc_ids = [s.orthanc_id for s, _ in seeded]
    uids = [spec.study_uid for _, spec in seeded]
    redis = RedisService(Stack.from_settings(stack_settings).layout)

    # The fault must meet work in flight: one run executing, others waiting in the queue.
    def in_flight_and_queued() -> Counter[str] | None:
        statuses = _run_statuses(queue_system, orthanc_ids)
        return statuses if statuses["STARTED"] >= 1 and statuses["STARTING"] >= 2 else None

    before = wait_for(in_flight_and_queued, TIMEOUT, "a run in flight and two waiting in Redis", interval=0.2)
    assert isinstance(before, Counter)
    redis.stop()
    stopped = time.monotonic()
    time.sleep(3)
    redis.start()
    restarted = time.monotonic()

    def all_requests_succeeded() -> bool:
        rows = query("SELECT status FROM ingestion_request WHERE orthanc_id = ANY(:ids)", ids=orthanc_ids)
        return len(rows) >= STUDIES and all(r[0] == "succeeded" for r in rows)

    wait_for(all_requests_succeeded, TIMEOUT, "every webhook request to succeed")
    finished = time.monotonic()
    assert versions_per_study(uids) == dict.fromkeys(uids, 1), "each study exactly one version"
    everything = events.read_all(
        settled=lambda: all(queue_system.settled(o, u) for o, u in zip(orthanc_ids, uids, strict=True))
    )
    messages = [m for m in everything if m.key in uids]
    assert sorted(m.key for m in messages) == sorted(uids), "each study exactly one event"
    after = _run_statuses(queue_system, orthanc_ids)
    assert after["STARTED"] == after["STARTING"] == after["QUEUED"] == 0, f"a run is stuck: {after}"
    print(
        f"redis restart: runs before {dict(before)}; Redis down {restarted - stopped:.1f}s; all requests "
        f"succeeded {finished - restarted:.1f}s after the restart; runs after {dict(after)}"
    )


def test_a_run_launched_while_redis_is_down_waits_for_it_and_spends_no_retry_or_dead_letter(
    stack_settings: Settings, queue_system: System, events: KafkaTap
) -> None:
    redis = RedisService(Stack.from_settings(stack_settings).layout)
    # The launcher has sent runs before (its connection to Redis is open) when Redis dies.
    _warm, warm_spec = seed_one(stack_settings, modality="DX")
    wait_for(lambda: versions_per_study([warm_spec.study_uid]) == {warm_spec.study_uid: 1}, TIMEOUT, "a first run")
    pid = redis.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    try:
        seeded, spec = seed_one(stack_settings, modality="DX")
        # Orthanc's Lua call reaches the webhook, which creates the run; the daemon dequeues
        # it and the launcher meets the outage.
        wait_for(
            lambda: [r for r in queue_system.study_runs(seeded.orthanc_id) if r["status"] == "STARTING"],
            TIMEOUT,
            "the run's launch to meet the unreachable queue",
        )
        time.sleep(4)  # a few of the launcher's attempts, more than Celery's own publish retries
        assert [r["status"] for r in queue_system.study_runs(seeded.orthanc_id)] == ["STARTING"]
    finally:
        redis.start()
    wait_for(lambda: versions_per_study([spec.study_uid]) == {spec.study_uid: 1}, TIMEOUT, "the study's version")
    wait_for(
        lambda: [r for r in queue_system.study_runs(seeded.orthanc_id) if r["status"] == "SUCCESS"],
        TIMEOUT,
        "the run to succeed",
    )
    runs = queue_system.study_runs(seeded.orthanc_id)
    assert [r["status"] for r in runs] == ["SUCCESS"], "one run, not a failed one and its retry"
    assert query("SELECT count(*) FROM dead_letter WHERE orthanc_id = :id", id=seeded.orthanc_id) == [(0,)]
    everything = events.read_all(
        key=spec.study_uid, settled=lambda: queue_system.settled(seeded.orthanc_id, spec.study_uid)
    )
    assert [m.key for m in everything] == [spec.study_uid]
