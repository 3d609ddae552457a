"""The instance config: PostgreSQL when configured through the environment, SQLite otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dicom_pipeline.dagster_home import write_dagster_home


def test_pooled_postgres_storage_when_the_database_url_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOM_PIPELINE_DAGSTER_DATABASE_URL", "postgresql+psycopg2://u:p@h/d")
    config = yaml.safe_load(write_dagster_home(tmp_path).read_text())
    storage = config["storage"]["custom"]
    assert (storage["module"], storage["class"]) == ("dicom_pipeline.dagster_storage", "PooledPostgresStorage")
    assert storage["config"]["postgres_url"] == {"env": "DICOM_PIPELINE_DAGSTER_DATABASE_URL"}
    # No process checks (and races to create) the schema: `db upgrade` migrates it.
    assert storage["config"]["should_autocreate_tables"] is False


def test_sqlite_storage_otherwise_with_the_same_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DICOM_PIPELINE_DAGSTER_DATABASE_URL", raising=False)
    config = yaml.safe_load(write_dagster_home(tmp_path).read_text())
    assert config["storage"] == {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    limits = {item["key"]: item for item in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limits["dicom/study_uid"]["limit"] == 1 and limits["dicom/study_uid"]["value"]["applyLimitPerUniqueValue"]
    assert limits["dagster/backfill"]["limit"] == 2
    assert config["run_retries"]["retry_on_asset_or_op_failure"] is False
    assert config["telemetry"]["enabled"] is False
