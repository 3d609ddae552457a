"""Writes a DAGSTER_HOME: PostgreSQL storage when configured through the environment,
SQLite in that folder otherwise; everything else as in dagster_home/dagster.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

TEMPLATE_ENV = "DICOM_PIPELINE_DAGSTER_DATABASE_URL"


def instance_config(home: Path, template_text: str) -> dict[str, object]:
    config: dict[str, object] = yaml.safe_load(template_text)
    if not os.environ.get(TEMPLATE_ENV):
        config["storage"] = {"sqlite": {"base_dir": str(home / "storage")}}
    return config


def write_dagster_home(home: Path) -> Path:
    # The committed dagster_home/dagster.yaml is the one source of the instance settings.
    template = Path(__file__).resolve().parents[1] / "dagster_home" / "dagster.yaml"
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    target.write_text(yaml.safe_dump(instance_config(home, template.read_text()), sort_keys=False))
    return target
