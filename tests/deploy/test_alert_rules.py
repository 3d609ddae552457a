"""The shipped alert rules (deploy/prometheus/) pass Prometheus's own checks and unit tests.

promtool comes from Debian's `prometheus` package (2.42), installed here when missing (as
root), as the stack installs its services. That the rules' metric names and labels really
exist is tests/e2e/test_alerting.py's part.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from dicom_pipeline_dev.stack.prerequisites import ensure_debian_package

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    ensure_debian_package("prometheus", present=shutil.which("promtool") is not None)
    found = shutil.which("promtool")
    assert found is not None
    return found


def _run(promtool: str, *args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_rules_are_valid_and_their_unit_tests_pass(promtool: str) -> None:
    checked = _run(promtool, "check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", "alerts.test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_the_unit_tests_catch_a_rule_that_no_longer_fires(promtool: str, tmp_path: Path) -> None:
    # The outbox alert's threshold raised past what its test series reach: the test must fail.
    shutil.copy(RULES / "alerts.test.yml", tmp_path)
    rules = (RULES / "alerts.yml").read_text()
    broken = rules.replace("dicom_pipeline_outbox_oldest_pending_age_seconds > 600", "x_outbox_age > 600")
    assert broken != rules
    (tmp_path / "alerts.yml").write_text(broken)
    tested = _run(promtool, "test", "rules", "alerts.test.yml", cwd=tmp_path)
    report = tested.stdout + tested.stderr  # promtool prints the failures on stderr
    assert tested.returncode != 0 and "alertname: DicomEventsWaitingInOutbox" in report, report
