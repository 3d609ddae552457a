"""What the study job's ops hand to each other survives a round trip through its JSON copy,
and every op reads the same study command from its run."""

from __future__ import annotations

import datetime as dt
import zlib

import dagster as dg

from dicom_pipeline.db.repository import VersionOutcome
from dicom_pipeline.defs import tags
from dicom_pipeline.defs.ops import study_command
from dicom_pipeline.defs.step_outputs import DURABLE
from dicom_pipeline.domain.metadata import DicomDate, ExtractedStudy, InstanceRecord, SeriesAttributes, StudyAttributes
from dicom_pipeline.ingestion.study import Extraction

ORTHANC_ID = "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d"


def _extraction() -> Extraction:
    study = StudyAttributes(
        study_instance_uid="1.2.3",
        patient_id="P1",
        patient_name="Øvergård^Søren",
        patient_birth_date=DicomDate("19700101", dt.date(1970, 1, 1)),
        patient_sex="M",
        accession_number=None,
        study_date=DicomDate("2024013", None),  # invalid: raw kept, no date
        study_time=DicomDate("101500.5", None, dt.time(10, 15, 0, 500000)),
        study_description="CT",
        referring_physician_name=None,
        specific_character_set="ISO_IR 100",
    )
    record = InstanceRecord(
        orthanc_id="i1",
        orthanc_file_uuid="f1",
        sop_instance_uid="1.2.3.4.5",
        series_instance_uid="1.2.3.4",
        sha256="ab" * 32,
        size_bytes=1234,
        storage_key="1.2.3/1.2.3.4/1.2.3.4.5.dcm",
        staged_path="/staging/run/i1.dcm",
        instance_number=1,
        header={"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Øvergård^Søren"}]}},
        issues=("non-conforming-uid",),
    )
    extracted = ExtractedStudy(
        orthanc_id=ORTHANC_ID,
        orthanc_last_update="20241201T101500",
        study=study,
        series={"1.2.3.4": SeriesAttributes("1.2.3.4", "CT", 1, None, None)},
        instances=[record],
        staging_dir="/staging/run",
        study_instance_uid="1.2.3",
    )
    return Extraction(ORTHANC_ID, extracted)


def _round_trip(name: str, value: object) -> object:
    adapter = DURABLE[name]
    return adapter.validate_json(zlib.decompress(zlib.compress(adapter.dump_json(value))))


def test_an_extraction_comes_back_equal_with_its_dates_headers_and_issues() -> None:
    assert _round_trip("extraction", _extraction()) == _extraction()


def test_a_gone_study_and_a_missing_outcome_come_back_as_they_were() -> None:
    assert _round_trip("extraction", Extraction(ORTHANC_ID, None)) == Extraction(ORTHANC_ID, None)
    assert _round_trip("outcome", None) is None
    outcome = VersionOutcome("created", "1.2.3", 1, "c" * 64, "e1", 1, 1, 1, 0, 0)
    assert _round_trip("outcome", outcome) == outcome


def test_every_op_and_the_hook_read_one_command_from_the_run() -> None:
    run = dg.DagsterRun(
        job_name="ingest_study",
        run_id="11111111-2222-3333-4444-555555555555",
        run_config=tags.study_run_config(ORTHANC_ID, "caller-1", "webhook"),
        tags={**tags.study_run_tags(ORTHANC_ID, "caller-1", "webhook", "1.2.3"), tags.REQUEST_ID: "42"},
    )
    command = study_command(run)
    assert (command.orthanc_id, command.correlation_id, command.trigger, command.request_id, command.run_id) == (
        ORTHANC_ID,
        "caller-1",
        "webhook",
        "42",
        run.run_id,
    )


def test_a_run_launched_by_hand_without_a_correlation_id_uses_its_root_run_id_in_every_re_execution() -> None:
    config = {"ops": {"extract_study": {"config": {"orthanc_study_id": ORTHANC_ID}}}}
    root = dg.DagsterRun(job_name="ingest_study", run_id="aaaaaaaa-0000-0000-0000-000000000001", run_config=config)
    again = dg.DagsterRun(
        job_name="ingest_study",
        run_id="aaaaaaaa-0000-0000-0000-000000000002",
        run_config=config,
        root_run_id=root.run_id,
        parent_run_id=root.run_id,
    )
    assert study_command(root).correlation_id == study_command(again).correlation_id == root.run_id
    assert study_command(root).trigger == "manual"
