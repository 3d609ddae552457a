"""Dead letters settled by what ended the study later, and none for an attempt Dagster retries.

Found by a soak: a deletion run failed from outside (PostgreSQL killed as it started), the
instance's run retry recorded the deletion, and the backstop then wrote and published a
`RunFailure` letter for the first attempt that stayed open, because only an ingestion
resolved letters.
"""

from __future__ import annotations

import datetime as dt
import uuid

import dagster as dg
from dicom_pipeline_dev.http import ServiceSession

from dicom_pipeline.db.dead_letters import DeadLetterInput
from dicom_pipeline.db.ingestion_requests import DELETION_TRIGGER
from dicom_pipeline.definitions import build_definitions
from dicom_pipeline.defs.backstop import dead_letter_backstop
from dicom_pipeline.defs.resources import resources_from_settings
from dicom_pipeline.ingestion.dead_letter import write_dead_letter
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import ingest, query, seed_one


def _letter(orthanc_id: str, study_uid: str, run_id: str) -> DeadLetterInput:
    return DeadLetterInput(
        correlation_id="test-settlement",
        trigger=DELETION_TRIGGER,
        study_instance_uid=study_uid,
        orthanc_id=orthanc_id,
        instance=None,
        run_id=run_id,
        failed_op="run",
        error_type="RunFailure",
        error_message="the run's worker was killed",
        transient=True,
        attempts=1,
    )


def _open_letters(orthanc_id: str) -> list[tuple[str]]:
    return query("SELECT run_id FROM dead_letter WHERE orthanc_id = :id AND resolved_at IS NULL", id=orthanc_id)


def test_a_recorded_deletion_resolves_the_letters_of_earlier_failed_attempts(
    stack_settings: Settings, orthanc: ServiceSession
) -> None:
    seeded, spec = seed_one(stack_settings, series=1, instances=1)
    assert ingest(seeded.orthanc_id)["status"] == "created"
    write_dead_letter(get_runtime(), _letter(seeded.orthanc_id, spec.study_uid, str(uuid.uuid4())))
    orthanc.delete(f"/studies/{seeded.orthanc_id}").raise_for_status()

    assert ingest(seeded.orthanc_id, trigger=DELETION_TRIGGER)["status"] == "deleted"

    assert _open_letters(seeded.orthanc_id) == []


def test_a_letter_written_after_the_fact_for_an_attempt_before_a_recorded_deletion_is_recorded_resolved(
    stack_settings: Settings, orthanc: ServiceSession
) -> None:
    seeded, spec = seed_one(stack_settings, series=1, instances=1)
    assert ingest(seeded.orthanc_id)["status"] == "created"
    attempt_started = dt.datetime.now(dt.UTC)
    orthanc.delete(f"/studies/{seeded.orthanc_id}").raise_for_status()
    assert ingest(seeded.orthanc_id, trigger=DELETION_TRIGGER)["status"] == "deleted"

    # The backstop noticing the first attempt's failure only now.
    write_dead_letter(
        get_runtime(), _letter(seeded.orthanc_id, spec.study_uid, str(uuid.uuid4())), ingested_since=attempt_started
    )

    assert _open_letters(seeded.orthanc_id) == []


def _backstop_sees_failure(stack_settings: Settings, *, will_retry: bool) -> str:
    """A study run that failed where no hook ran (its worker died), as the backstop sees it."""
    seeded, spec = seed_one(stack_settings, series=1, instances=1)
    with dg.instance_for_test() as instance:
        job = build_definitions(stack_settings, resources_from_env=False).resolve_job_def("ingest_study")
        run = instance.create_run_for_job(
            job,
            run_config={"ops": {"extract_study": {"config": {"orthanc_study_id": seeded.orthanc_id}}}},
            tags={
                "dicom/orthanc_id": seeded.orthanc_id,
                "dicom/study_uid": spec.study_uid,
                "dagster/will_retry": str(will_retry).lower(),
            },
        )
        instance.report_run_failed(run)
        failure = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records[0]
        event = failure.event_log_entry.dagster_event
        failed_run = instance.get_run_by_id(run.run_id)
        assert event is not None and failed_run is not None
        with dg.build_run_status_sensor_context(
            sensor_name="dead_letter_backstop",
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=failed_run,
            resources={"ingestion": resources_from_settings(stack_settings)["ingestion"]},
        ) as context:
            dead_letter_backstop(context.for_run_failure())
        return run.run_id


def test_the_backstop_writes_no_letter_for_an_attempt_dagster_will_retry(stack_settings: Settings) -> None:
    run_id = _backstop_sees_failure(stack_settings, will_retry=True)
    assert query("SELECT count(*) FROM dead_letter WHERE run_id = :run", run=run_id) == [(0,)]


def test_the_backstop_writes_one_letter_for_the_last_attempt(stack_settings: Settings) -> None:
    run_id = _backstop_sees_failure(stack_settings, will_retry=False)
    assert query("SELECT failed_op, error_type FROM dead_letter WHERE run_id = :run", run=run_id) == [
        ("run", "RunFailure")
    ]
