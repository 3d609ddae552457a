"""The log audit finds what it must (a check that could never fail would prove nothing)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.audit_logs import audit, log_files


def test_audit_names_a_leaked_name_secret_and_birth_date_and_passes_clean_logs() -> None:
    # Outside pytest's temporary folder: the real audit reads that one after the suite.
    with tempfile.TemporaryDirectory() as folder:
        _check_audit(Path(folder))


def test_kafka_data_segments_are_not_logs() -> None:
    with tempfile.TemporaryDirectory() as folder:
        segment = Path(folder) / "kafka" / "data" / "dicom.metadata.v1-0" / "00000000000000000000.log"
        segment.parent.mkdir(parents=True)
        segment.write_text("Doe^Jane")
        (Path(folder) / "kafka" / "kafka.log").write_text("started")
        assert [p.name for p in log_files([Path(folder)])] == ["kafka.log"]


def _check_audit(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "worker.log").write_text('{"message": "study 1.2.3 for Doe^Jane", "pw": "s3cret-token"}\n')
    (tmp_path / "clean.log").write_text('{"message": "study 1.2.840.19700101.5 ingested"}\n')
    (tmp_path / "birth.log").write_text("PatientBirthDate=19700101\n")
    (tmp_path / "notes.txt").write_text("Doe^Jane\n")  # not a log file
    files = log_files([tmp_path])
    assert [f.name for f in files] == ["worker.log", "birth.log", "clean.log"]

    findings = audit(files, {"Doe^Jane": "patient name", "s3cret-token": "secret webhook_token"})
    assert findings == sorted(
        [
            f"birth date in {tmp_path / 'birth.log'}",
            f"patient name in {tmp_path / 'a' / 'worker.log'}",
            f"secret webhook_token in {tmp_path / 'a' / 'worker.log'}",
        ]
    )
    assert audit([tmp_path / "clean.log"], {"Doe^Jane": "patient name"}) == []
