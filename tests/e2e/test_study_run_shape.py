"""The study run as the users asked for it, through the real daemon and Celery worker: four
ops, a failure hook that sends the dead letter, re-execution from a failed op, and runs
keyed and limited by Study Instance UID."""

from __future__ import annotations

import concurrent.futures
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dagster_graphql import DagsterGraphQLClient
from dicom_pipeline_dev.seed.runner import orthanc_client
from dicom_pipeline_dev.seed.synth import SeedPlan, build_instances, plan_studies

from dicom_pipeline.defs import tags
from dicom_pipeline.domain.identifiers import new_correlation_id
from dicom_pipeline.settings import Settings
from tests.e2e.system import FINISHED_RUN_STATUSES, System, SystemPool, wait_for
from tests.helpers import KafkaTap, execute, made_up_orthanc_id, query, seed_one, unique_seed, upload

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 180  # a hang guard only: a run normally lands within seconds
STUDY_OPS = ["extract_study", "store_raw", "persist_metadata", "publish_events"]

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      status startTime endTime parentRunId
      tags { key value }
      stepStats { stepKey status }
      eventConnection(afterCursor: null, limit: 1000) { events { __typename ... on MessageEvent { message } } }
    }
  }
}
"""

REEXECUTE = """
mutation Reexecute($parentRunId: String!, $strategy: ReexecutionStrategy!) {
  launchRunReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: $strategy}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""

BACKSTOP_TICKS = """
query Ticks {
  sensorOrError(sensorSelector: {repositoryLocationName: "dicom_pipeline", repositoryName: "__repository__",
                                 sensorName: "dead_letter_backstop"}) {
    ... on Sensor { sensorState { ticks(limit: 1) { timestamp status } } }
  }
}
"""


@pytest.fixture(scope="module")
def system(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    pool = SystemPool(stack_settings, Path(tmp_path_factory.mktemp("run-shape-systems")))
    # The sensor stopped and no webhook: the test's own launches are the only runs.
    running = pool.get("run-shape", sensor=False)
    running.ensure(dagster=True, webhook=False)
    yield running
    pool.close()


def _graphql(system: System, query_text: str, **variables: Any) -> dict[str, Any]:
    response = requests.post(
        f"{system.dagster_url}/graphql", json={"query": query_text, "variables": variables}, timeout=30
    )
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"]
    return data


def _launch(system: System, orthanc_id: str, study_uid: str | None = None) -> str:
    """What every trigger does: a run of ingest_study with the study's tags from creation."""
    host, _, port = system.dagster_url.removeprefix("http://").partition(":")
    correlation_id = new_correlation_id()
    return DagsterGraphQLClient(host, port_number=int(port)).submit_job_execution(
        "ingest_study",
        repository_location_name="dicom_pipeline",
        repository_name="__repository__",
        run_config=tags.study_run_config(orthanc_id, correlation_id, "e2e"),
        tags=tags.study_run_tags(orthanc_id, correlation_id, "e2e", study_uid),
    )


def _finished_run(system: System, run_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = _graphql(system, RUN_QUERY, runId=run_id)["runOrError"]
        return run if run["status"] in FINISHED_RUN_STATUSES else None

    run = wait_for(finished, RUN_TIMEOUT, f"run {run_id} to finish")
    assert isinstance(run, dict)
    return run


def _steps(run: dict[str, Any]) -> dict[str, str]:
    return {step["stepKey"]: step["status"] for step in run["stepStats"]}


def _backstop_ticked_after(system: System, moment: float) -> bool:
    state = _graphql(system, BACKSTOP_TICKS)["sensorOrError"]["sensorState"]
    return any(t["timestamp"] > moment and t["status"] in ("SKIPPED", "SUCCESS") for t in state["ticks"])


def test_a_run_for_a_study_orthanc_does_not_hold_fails_at_extract_and_its_hook_sends_the_dead_letter(
    system: System, dead_letters: KafkaTap
) -> None:
    run_id = _launch(system, made_up_orthanc_id())
    run = _finished_run(system, run_id)

    assert run["status"] == "FAILURE"
    steps = _steps(run)
    assert steps.pop("extract_study") == "FAILURE"
    assert set(steps.values()) <= {"SKIPPED"}, steps
    types = [event["__typename"] for event in run["eventConnection"]["events"]]
    assert "HookCompletedEvent" in types and "HookErroredEvent" not in types, types
    letter = next(m for m in dead_letters.read(expected=1, timeout=30) if m.value.get("run_id") == run_id)
    assert letter.value["failed_op"] == "extract_study"
    assert letter.value["error_type"] == "OrthancNotFound"
    # The backstop sees the failed run too, and writes no second letter for it.
    wait_for(lambda: _backstop_ticked_after(system, float(run["endTime"])), 60, "a backstop tick after the failure")
    assert query("SELECT failed_op FROM dead_letter WHERE run_id = :run", run=run_id) == [("extract_study",)]


def test_a_run_whose_db_write_failed_re_executed_from_failure_ingests_once_without_a_second_download(
    stack_settings: Settings, system: System, events: KafkaTap
) -> None:
    seeded, spec = seed_one(stack_settings, series=1, instances=3, size=32)
    orthanc_id = seeded.orthanc_id
    # The fault: every transaction that writes this study's version loses its connection,
    # as if PostgreSQL went away under the DB write (the step retries it, then gives up).
    execute(
        "CREATE OR REPLACE FUNCTION e2e_drop_connection() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$"
    )
    execute(
        "CREATE TRIGGER e2e_drop_connection BEFORE INSERT ON study_version "
        "FOR EACH ROW EXECUTE FUNCTION e2e_drop_connection()"
    )
    try:
        first_id = _launch(system, orthanc_id, spec.study_uid)
        first = _finished_run(system, first_id)
    finally:
        execute("DROP TRIGGER IF EXISTS e2e_drop_connection ON study_version")
        execute("DROP FUNCTION IF EXISTS e2e_drop_connection()")
    assert first["status"] == "FAILURE"
    assert _steps(first)["persist_metadata"] == "FAILURE" and _steps(first)["store_raw"] == "SUCCESS"
    assert query("SELECT count(*) FROM study WHERE study_instance_uid = :uid", uid=spec.study_uid) == [(0,)]

    launched = _graphql(system, REEXECUTE, parentRunId=first_id, strategy="FROM_FAILURE")
    assert launched["launchRunReexecution"]["__typename"] == "LaunchRunSuccess", launched
    second = _finished_run(system, launched["launchRunReexecution"]["run"]["runId"])

    assert second["status"] == "SUCCESS"
    # Only the failed op and the one after it ran: nothing was downloaded again.
    assert _steps(second) == {"persist_metadata": "SUCCESS", "publish_events": "SUCCESS"}
    versions = query(
        "SELECT v.version FROM study_version v JOIN study s ON s.id = v.study_id WHERE s.study_instance_uid = :uid",
        uid=spec.study_uid,
    )
    assert versions == [(1,)]
    assert len(events.read_all(key=spec.study_uid, settled=lambda: system.settled(orthanc_id, spec.study_uid))) == 1
    # The dead letter of the failed attempt is resolved by the re-execution.
    assert query(
        "SELECT resolved_at IS NOT NULL FROM dead_letter WHERE study_instance_uid = :uid", uid=spec.study_uid
    ) == [(True,)]


def test_two_orthanc_studies_sharing_one_study_instance_uid_never_run_at_the_same_time(
    stack_settings: Settings, system: System
) -> None:
    plan = SeedPlan(
        studies=1,
        modalities=("CT",),
        series_per_study=1,
        instances_per_series=20,
        rows=64,
        columns=64,
        seed=unique_seed(),
    )
    spec = plan_studies(plan)[0]
    first = list(build_instances(spec, plan.seed))
    # The same Study Instance UID under another Patient ID: Orthanc keeps two studies.
    second = list(build_instances(spec, plan.seed + 1))
    for dataset in second:
        dataset.PatientID = f"{dataset.PatientID}-other"
    upload(stack_settings, first)
    upload(stack_settings, second)
    studies = query_orthanc_studies(stack_settings, spec.study_uid)
    assert len(studies) == 2, studies

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        run_ids = list(pool.map(lambda oid: _launch(system, oid, spec.study_uid), studies * 2))
    runs = [_finished_run(system, run_id) for run_id in run_ids]

    for run in runs:
        assert {t["key"]: t["value"] for t in run["tags"]}["dicom/study_uid"] == spec.study_uid
    intervals = sorted((float(r["startTime"]), float(r["endTime"])) for r in runs)
    for (_, previous_end), (next_start, _) in itertools.pairwise(intervals):
        assert next_start >= previous_end, "two runs of one Study Instance UID overlapped"


def query_orthanc_studies(settings: Settings, study_uid: str) -> list[str]:
    with orthanc_client(settings, timeout=30) as client:
        found = client.post("/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}})
        found.raise_for_status()
        return list(found.json())
