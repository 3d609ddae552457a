"""The code location loads, and the job has the shape and policies the design relies on."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import pytest

from dicom_pipeline.definitions import build_definitions
from dicom_pipeline.settings import Settings

defs = build_definitions(Settings(_env_file=None), resources_from_env=False)  # type: ignore[call-arg]


def test_definitions_load_with_the_four_study_ops_schedule_and_sensors() -> None:
    job = defs.resolve_job_def("ingest_study")
    assert [node.name for node in job.graph.nodes_in_topological_order] == [
        "extract_study",
        "store_raw",
        "persist_metadata",
        "publish_events",
    ]
    assert defs.resolve_sensor_def("dead_letter_backstop") is not None
    assert defs.resolve_sensor_def("outbox_relay_sensor") is not None
    assert defs.resolve_schedule_def("purge_dagster_runs_schedule") is not None


def test_the_study_ops_leave_retries_to_the_use_case() -> None:
    # One retry policy: Dagster retrying an op would retry what the use case gave up on.
    for node in defs.resolve_job_def("ingest_study").graph.nodes:
        assert isinstance(node.definition, dg.OpDefinition)
        assert node.definition.retry_policy is None, node.name


def test_rows_are_written_only_after_the_files_are_stored() -> None:
    # persist_metadata waits for store_raw even though it takes nothing from it.
    job = defs.resolve_job_def("ingest_study")
    upstream = {
        node: {output.node_name for output in outputs}
        for node, outputs in job.graph.dependency_structure.input_to_upstream_outputs_for_node(
            "persist_metadata"
        ).items()
    }
    assert {"extract_study", "store_raw"} <= set().union(*upstream.values())


def test_the_study_job_has_the_dead_letter_failure_hook_on_every_op() -> None:
    job = defs.resolve_job_def("ingest_study")
    assert {hook.name for hook in job.hook_defs} == {"dead_letter_on_failure"}


def test_backfill_partition_runs_take_their_own_celery_queue() -> None:
    job = defs.resolve_job_def("backfill_by_study_date")
    assert job.tags["dagster-celery/queue"] == "backfill"
    assert "dagster-celery/queue" not in defs.resolve_job_def("ingest_study").tags


def test_asset_graph_draws_orthanc_to_storage_postgres_and_kafka() -> None:
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey
    assert graph.get(key(["storage", "raw_dicom"])).parent_keys == {key(["orthanc", "studies"])}
    assert graph.get(key(["postgres", "study_metadata"])).parent_keys == {
        key(["orthanc", "studies"]),
        key(["storage", "raw_dicom"]),
    }
    assert graph.get(key(["kafka", "dicom_metadata_v1"])).parent_keys == {key(["postgres", "study_metadata"])}
    assert key(["kafka", "dicom_metadata_dlq"]) in graph.get_all_asset_keys()


def test_backfill_job_is_daily_partitioned_on_study_date_with_low_priority() -> None:
    job = defs.resolve_job_def("backfill_by_study_date")
    assert isinstance(job.partitions_def, dg.DailyPartitionsDefinition)
    assert job.tags["dagster/priority"] == "-1"


def test_every_job_holds_the_ingestion_resource_so_its_runs_beat_and_the_reaper_watches_it() -> None:
    from dicom_pipeline.defs.reaper import MONITORED_JOBS

    jobs = {job.name: job for job in defs.resolve_all_job_defs() if not job.name.startswith("__")}
    # A job whose runs never beat would be reaped as dead; one left out would never be.
    assert set(jobs) == set(MONITORED_JOBS)
    for name, job in jobs.items():
        assert "ingestion" in job.get_required_resource_defs(), name
    assert defs.resolve_sensor_def("dead_run_reaper") is not None


def test_a_crashed_study_run_is_retried_from_the_start() -> None:
    # The files a crashed run staged were on its worker: a retry starts with extraction.
    assert defs.resolve_job_def("ingest_study").tags["dagster/retry_strategy"] == "ALL_STEPS"


def test_definitions_are_built_from_the_settings_given() -> None:
    quiet = build_definitions(
        Settings(_env_file=None, change_feed_sensor=False, reconcile_schedule=False, backfill_start_date="2020-01-01"),  # type: ignore[call-arg]
        resources_from_env=False,
    )
    assert quiet.resolve_sensor_def("orthanc_change_feed").default_status == dg.DefaultSensorStatus.STOPPED
    assert quiet.resolve_sensor_def("reconcile_sensor").default_status == dg.DefaultSensorStatus.STOPPED
    partitions = quiet.resolve_job_def("backfill_by_study_date").partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert partitions.get_first_partition_key() == "2020-01-01"


def test_secrets_set_in_the_environment_become_env_vars_not_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from dicom_pipeline.defs.resources import IngestionResource, resources_from_settings

    monkeypatch.setenv("DICOM_PIPELINE_ORTHANC_PASSWORD", "from-the-environment")
    resources = resources_from_settings(Settings(_env_file=None), from_env=True)  # type: ignore[call-arg]
    ingestion = resources["ingestion"]
    assert isinstance(ingestion, IngestionResource)
    # Unresolved until a run or tick starts, so the UI never shows the value.
    assert isinstance(ingestion.orthanc.password, dg.EnvVar)
    assert ingestion.orthanc.password.env_var_name == "DICOM_PIPELINE_ORTHANC_PASSWORD"


# Every setting that code running inside a Dagster run reads (adapters and use cases).
RUN_SETTINGS = (
    "orthanc_url",
    "orthanc_username",
    "orthanc_password",
    "orthanc_timeout_seconds",
    "database_url",
    "storage_url",
    "staging_dir",
    "s3_endpoint_url",
    "s3_region",
    "kafka_bootstrap_servers",
    "kafka_topic",
    "kafka_dlq_topic",
    "kafka_delivery_timeout_seconds",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_ca_location",
    "kafka_ssl_certificate_location",
    "kafka_ssl_key_location",
    "kafka_ssl_key_password",
    "kafka_ssl_check_hostname",
    "event_phi_profile",
    "phi_hash_key",
    "download_concurrency",
    "backfill_concurrency",
    "run_heartbeat_seconds",
    "run_dead_after_seconds",
    "log_level",
)


def test_resources_carry_every_setting_a_run_reads() -> None:
    from pathlib import Path

    from pydantic import SecretStr

    from dicom_pipeline.defs.resources import IngestionResource, resources_from_settings

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        orthanc_url="http://orthanc.example:8042",
        orthanc_password=SecretStr("orthanc-secret"),
        database_url=SecretStr("postgresql+psycopg2://u:p@db.example/meta"),
        storage_url="s3://bucket/prefix",
        staging_dir=Path("/scratch/staging"),
        s3_endpoint_url="http://minio.example:9000",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="pipeline",
        kafka_sasl_password=SecretStr("kafka-secret"),
        kafka_ssl_ca_location="/etc/ca.pem",
        kafka_ssl_certificate_location="/etc/client.pem",
        kafka_ssl_key_location="/etc/client.key",
        kafka_ssl_key_password=SecretStr("key-secret"),
        kafka_ssl_check_hostname=False,
        event_phi_profile="minimal",
        phi_hash_key=SecretStr("hash-key"),
        download_concurrency=7,
        run_heartbeat_seconds=2.0,
        run_dead_after_seconds=9.0,
    )
    ingestion = resources_from_settings(settings)["ingestion"]
    assert isinstance(ingestion, IngestionResource)
    rebuilt = ingestion.settings()
    for name in RUN_SETTINGS:
        assert getattr(rebuilt, name) == getattr(settings, name), name


def _launch_configs() -> list[tuple[str, dict[str, object]]]:
    """Each job with the run config each of its launchers writes (or none, from the UI)."""
    from dicom_pipeline.defs import tags
    from dicom_pipeline.defs.reconcile import full_reconcile_request

    backfill = defs.resolve_job_def("backfill_by_study_date")
    assert backfill.partitioned_config is not None
    partition = backfill.partitioned_config.get_run_config_for_partition_key("2024-01-02")
    schedules = [defs.resolve_schedule_def(name) for name in ("purge_dagster_runs_schedule", "nightly_full_reconcile")]
    return [
        ("ingest_study", tags.study_run_config("0" * 8 + "-" + "-".join(["0" * 8] * 4), "corr-1", "webhook")),
        ("reconcile", dict(full_reconcile_request("key", "why").run_config)),
        ("reconcile", {}),
        ("outbox_relay", {}),
        ("purge_dagster_runs", {}),
        ("backfill_by_study_date", dict(partition)),
        *[(s.job_name or "", dict(_scheduled_run_config(s))) for s in schedules],
    ]


def _scheduled_run_config(schedule: dg.ScheduleDefinition) -> Mapping[str, object]:
    [request] = schedule.evaluate_tick(dg.build_schedule_context()).run_requests or []
    return request.run_config


@pytest.mark.parametrize(("job_name", "run_config"), _launch_configs())
def test_every_launched_run_logs_through_the_runs_console_logger_not_dagsters_default(
    job_name: str, run_config: dict[str, object]
) -> None:
    # A run config without `loggers` gets Dagster's coloured console logger, whatever the job
    # defines: every line of such a run reached the worker's log a second time (#22).
    from dagster._core.system_config.objects import ResolvedRunConfig

    from dicom_pipeline.defs.run_log import run_console_logger

    job = defs.resolve_job_def(job_name)
    assert job.loggers["console"] is run_console_logger
    assert set(ResolvedRunConfig.build(job, run_config).loggers) == {"console"}, job_name
