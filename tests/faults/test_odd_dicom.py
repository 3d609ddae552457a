"""pydicom's own test files, each sent to Orthanc: every study Orthanc accepts is either
ingested with the attributes pydicom reads, or dead-lettered with a precise reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicom_pipeline_dev.http import ServiceSession
from dicom_pipeline_dev.seed.runner import orthanc_client
from pydicom import dcmread
from pydicom.data import get_testdata_files

from dicom_pipeline.ingestion.batch import ingest_studies
from dicom_pipeline.runtime import get_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import query

pytestmark = pytest.mark.integration


def _accepted_by_orthanc(client: ServiceSession, path: Path) -> str | None:
    response = client.post("/instances", data=path.read_bytes())
    if response.status_code != 200:
        return None
    body = response.json()
    return str(body["ParentStudy"]) if isinstance(body, dict) and "ParentStudy" in body else None


def test_pydicom_test_files_are_ingested_or_dead_lettered_precisely(stack_settings: Settings) -> None:
    files = [Path(p) for p in get_testdata_files("*.dcm")]
    by_study: dict[str, Path] = {}
    refused = 0
    with orthanc_client(stack_settings) as client:
        for path in files:
            study = _accepted_by_orthanc(client, path)
            if study is None:
                refused += 1
            else:
                by_study.setdefault(study, path)
    assert len(by_study) >= 10, f"only {len(by_study)} studies accepted of {len(files)} files"

    report = ingest_studies(get_runtime(), list(by_study), trigger="fault-odd-dicom", run_id=None)
    ingested = failed = 0
    for orthanc_id, path in by_study.items():
        reference = dcmread(path, stop_before_pixels=True, force=True)
        rows = query("SELECT patient_id, study_date_raw FROM study WHERE orthanc_id = :id", id=orthanc_id)
        # Another Orthanc study with the same Study Instance UID (another file of pydicom's
        # set) ingested last: the study row, keyed by that UID, names the other Orthanc id.
        shared = query(
            "SELECT 1 FROM study s JOIN orthanc_study_seen o ON o.study_instance_uid = s.study_instance_uid "
            "WHERE o.orthanc_id = :id",
            id=orthanc_id,
        )
        if rows:
            ingested += 1
            patient_id, study_date_raw = rows[0]
            assert patient_id == (str(reference.get("PatientID", "")).strip() or None), path.name
            assert study_date_raw == (str(reference.get("StudyDate", "")).strip() or None), path.name
        elif shared:
            ingested += 1
        else:
            failed += 1
            letters = query(
                "SELECT error_type, error_message FROM dead_letter WHERE orthanc_id = :id ORDER BY id DESC LIMIT 1",
                id=orthanc_id,
            )
            assert letters, f"{path.name}: neither ingested nor dead-lettered"
            error_type, message = letters[0]
            assert error_type and len(message) > 10, f"{path.name}: vague reason {message!r}"
    print(
        f"odd DICOM: {len(files)} files, {refused} refused by Orthanc, {len(by_study)} studies, "
        f"{ingested} ingested, {failed} dead-lettered; batch {report.as_dict()}"
    )
    # What the use case reported agrees with what the database holds, study for study.
    counts = report.as_dict()
    assert counts["failed"] == failed, f"reported {counts['failed']} failures, {failed} studies have no rows"
    assert counts["created"] + counts["updated"] + counts["unchanged"] + counts["superseded"] == ingested
