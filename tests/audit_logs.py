"""After the suite (`make test` runs this once pytest is done, whatever order tests ran in):
every log the run produced is free of patient names, birth dates and secrets.

    python -m tests.audit_logs FOLDER...   # exit 1 naming each finding
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

from dicom_pipeline_dev.seed.synth import NAMES_BY_CHARSET
from dicom_pipeline_dev.stack.layout import StackLayout

from dicom_pipeline.settings import Settings

BIRTH_DATE = re.compile(r"(?<![0-9.])(19700101|1970-01-01)(?![0-9])")
LOG_SUFFIXES = (".log",)


def forbidden_values(settings: Settings) -> dict[str, str]:
    secrets = StackLayout(settings).secrets()
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
    forbidden.update({value: f"secret {name}" for name, value in secrets.__dict__.items() if value})
    return forbidden


# Kafka names its data segments *.log: they hold the events themselves (patient names in
# the `full` profile, by design), not log lines.
NOT_LOGS = ("kafka/data/",)


def log_files(folders: Iterable[Path]) -> list[Path]:
    return sorted(
        p
        for folder in folders
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in LOG_SUFFIXES and not any(part in p.as_posix() for part in NOT_LOGS)
    )


def audit(files: list[Path], forbidden: dict[str, str]) -> list[str]:
    findings = []
    for path in files:
        text = path.read_text(errors="replace")
        findings += [f"{what} in {path}" for value, what in forbidden.items() if value in text]
        # The seeded birth date, as a value of its own (not digits inside a long UID).
        if BIRTH_DATE.search(text):
            findings.append(f"birth date in {path}")
    return sorted(set(findings))


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] or [Path(".stack")]
    files = log_files(folders)
    if not files:
        print(f"log audit: no log file under {', '.join(map(str, folders))}: nothing was audited", file=sys.stderr)
        return 1
    findings = audit(files, forbidden_values(Settings()))
    size = sum(f.stat().st_size for f in files)
    if findings:
        print("log audit FAILED:\n  " + "\n  ".join(findings), file=sys.stderr)
        return 1
    print(f"log audit: {len(files)} log files, {size} bytes: no patient name, birth date or secret")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
