"""Runs last: every log the suite produced is free of patient names, birth dates and secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dicom_pipeline.seed.synth import NAMES_BY_CHARSET
from dicom_pipeline.settings import Settings
from dicom_pipeline.stack.layout import StackLayout

pytestmark = pytest.mark.integration

BIRTH_DATE = re.compile(r"(?<![0-9.])(19700101|1970-01-01)(?![0-9])")


def _log_files(stack_settings: Settings, basetemp: Path) -> list[Path]:
    files = list(basetemp.rglob("*.log"))
    files += list(stack_settings.stack_dir.glob("*/*.log"))
    return [f for f in files if f.is_file()]


def test_logs_contain_no_patient_names_birth_dates_or_secrets(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    secrets = StackLayout(stack_settings).secrets()
    forbidden = {name: "patient name" for names in NAMES_BY_CHARSET.values() for name in names}
    forbidden.update(
        {
            part: "patient name"
            for names in NAMES_BY_CHARSET.values()
            for name in names
            for part in name.split("^")
            if len(part) > 4
        }
    )
    forbidden.update(
        {
            secrets.orthanc_password: "Orthanc password",
            secrets.database_password: "database password",
            secrets.postgres_superuser_password: "PostgreSQL superuser password",
            secrets.webhook_token: "webhook token",
            secrets.phi_hash_key: "PHI hash key",
        }
    )
    files = _log_files(stack_settings, tmp_path_factory.getbasetemp())
    assert any(f.name == "pipeline-json.log" for f in files), "the suite's own log was not captured"
    findings = []
    scanned = 0
    for path in files:
        text = path.read_text(errors="replace")
        scanned += len(text)
        for value, what in forbidden.items():
            if value and value in text:
                findings.append(f"{what} in {path}")
        # The seeded birth date, as a value of its own (not digits inside a long UID).
        if BIRTH_DATE.search(text):
            findings.append(f"birth date in {path}")
    assert scanned > 0
    assert not findings, "\n".join(sorted(set(findings)))
