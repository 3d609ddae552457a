"""The `dicom-pipeline` command (a contract: see README)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dicom_pipeline.settings import Settings, get_settings

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient


@click.group()
def main() -> None:
    """dicom-pipeline: Orthanc -> PostgreSQL, raw storage and Kafka, on Dagster."""
    from dicom_pipeline.logs import configure_logging

    # The console format in a terminal, JSON lines otherwise, as from every process.
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, process="cli")


def _parse_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form") from None


@main.command()
@click.argument("orthanc_study_ids", nargs=-1, required=True)
@click.option("--correlation-id", default=None, help="Use this correlation id (default: a new one per study).")
def ingest(orthanc_study_ids: tuple[str, ...], correlation_id: str | None) -> None:
    """Run ingest_study now, in this process, for each Orthanc study id; one JSON line each."""
    from dicom_pipeline.local_runs import dagster_instance, ingest_in_process

    instance = dagster_instance()
    failed = 0
    for orthanc_id in orthanc_study_ids:
        summary = ingest_in_process(orthanc_id, correlation_id=correlation_id, instance=instance)
        failed += summary["status"] == "failed"
        click.echo(json.dumps(summary, default=str))
    if failed:
        sys.exit(1)


@main.command()
@click.option("--full", is_flag=True, help="Scan every study in Orthanc, not only what changed since the last pass.")
@click.option("--dry-run", is_flag=True, help="Only list the studies a full scan would ingest (moves no cursor).")
def reconcile(full: bool, dry_run: bool) -> None:
    """Ingest Orthanc studies missing from the database or changed since their last ingestion."""
    from dicom_pipeline.ingestion.batch import ingest_studies
    from dicom_pipeline.ingestion.reconcile import find_stale_studies, plan_reconciliation
    from dicom_pipeline.runtime import get_runtime

    runtime = get_runtime()
    if dry_run:
        for study in find_stale_studies(runtime):
            click.echo(json.dumps({"orthanc_id": study.orthanc_id, "reason": study.reason}))
        return
    look = plan_reconciliation(runtime, full=full)
    stale = look.stale
    click.echo(f"reconciliation ({look.why}): {look.studies_checked} study(ies) checked", err=True)
    report = ingest_studies(
        runtime,
        [s.orthanc_id for s in stale],
        trigger="reconcile",
        run_id=None,
        on_result=lambda r: click.echo(
            json.dumps({"orthanc_id": r.orthanc_id, "status": r.status, "error": r.error}), err=True
        ),
    )
    click.echo(
        json.dumps({"mode": look.mode, "checked": look.studies_checked, "found": len(stale), **report.as_dict()})
    )
    if report.failures:
        sys.exit(1)


@main.command()
@click.option("--from", "date_from", required=True, help="First Study Date (YYYY-MM-DD).")
@click.option("--to", "date_to", required=True, help="Last Study Date (YYYY-MM-DD), inclusive.")
def backfill(date_from: str, date_to: str) -> None:
    """Run the Study Date backfill for each day of the range, with progress and a summary."""
    from dicom_pipeline.local_runs import run_backfill

    first, last = _parse_date(date_from), _parse_date(date_to)
    if last < first:
        raise click.BadParameter("--to is before --from")
    totals = run_backfill(first, last, progress=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(totals))
    if totals["failed"] or totals["failed_partitions"]:
        sys.exit(1)


@main.command()
@click.option("--from", "date_from", required=True, help="First day (YYYY-MM-DD, UTC) the events were recorded.")
@click.option("--to", "date_to", required=True, help="Last day, inclusive.")
@click.option("--study", "study_uid", default=None, help="Only this Study Instance UID.")
@click.option("--topic", default=None, help="Publish to this topic instead of dicom.metadata.v1.")
def replay(date_from: str, date_to: str, study_uid: str | None, topic: str | None) -> None:
    """Re-publish stored events of a date range with their original event ids."""
    from dicom_pipeline.domain.identifiers import read_uid
    from dicom_pipeline.ingestion.replay import replay_events
    from dicom_pipeline.runtime import get_runtime

    if study_uid is not None:
        study_uid = read_uid(study_uid, "--study")
    report = replay_events(
        get_runtime(), _parse_date(date_from), _parse_date(date_to), study_uid=study_uid, topic=topic
    )
    click.echo(json.dumps({"published": report.published}))


@main.group()
def dlq() -> None:
    """Dead letters: inspect and re-drive."""


@dlq.command("list")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved dead letters.")
@click.option("--json", "as_json", is_flag=True)
def dlq_list(include_resolved: bool, as_json: bool) -> None:
    """Open dead letters (identifiers and reasons only)."""
    from dicom_pipeline.db.dead_letter_queries import list_dead_letters
    from dicom_pipeline.db.engine import transaction
    from dicom_pipeline.runtime import get_runtime

    with transaction(get_runtime().engine) as session:
        letters = [
            {
                "id": d.id,
                "created_at": d.created_at.isoformat(),
                "orthanc_id": d.orthanc_id,
                "study_instance_uid": d.study_instance_uid,
                "failed_op": d.failed_op,
                "error_type": d.error_type,
                "error_message": d.error_message,
                "attempts": d.attempts,
                "run_id": d.run_id,
                "resolved_at": d.resolved_at.isoformat() if d.resolved_at else None,
            }
            for d in list_dead_letters(session, include_resolved=include_resolved)
        ]
    if as_json:
        click.echo(json.dumps(letters, indent=2))
        return
    for d in letters:
        click.echo(
            f"{d['id']:>6}  {str(d['created_at'])[:19]}  {d['orthanc_id'] or '-':<44}  {d['failed_op']:<16}  "
            f"{d['error_type']}: {str(d['error_message'])[:80]}"
        )
    click.echo(f"{len(letters)} dead letter(s)", err=True)


@dlq.command("redrive")
@click.option("--id", "letter_id", type=int, default=None, help="One dead letter.")
@click.option("--all", "redrive_all", is_flag=True, help="Every open dead letter.")
def dlq_redrive(letter_id: int | None, redrive_all: bool) -> None:
    """Ingest the dead-lettered studies again; each letter is resolved once its study ingests."""
    from dicom_pipeline.local_runs import redrive_dead_letters
    from dicom_pipeline.runtime import get_runtime

    if (letter_id is None) == (not redrive_all):
        raise click.UsageError("give exactly one of --id ID or --all")
    results = redrive_dead_letters(get_runtime(), letter_id)
    failed = 0
    for result in results:
        failed += result["status"] == "failed"
        click.echo(json.dumps(result))
    if failed:
        sys.exit(1)


@main.command()
@click.option(
    "--concurrency",
    "-c",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Runs executed at once on this host (one process each).",
)
@click.option(
    "--queues",
    "-Q",
    default="dagster,backfill",
    show_default=True,
    help="Comma-separated Celery queues: dagster (live study runs), backfill (partition runs).",
)
@click.option("--hostname", "-n", default=None, help="Worker name (default dicom-pipeline@<host>).")
def worker(concurrency: int, queues: str, hostname: str | None) -> None:
    """A Celery run worker: executes Dagster runs in warm processes (needs DAGSTER_HOME)."""
    from dicom_pipeline.run_worker import app, require_dagster_home, worker_argv

    try:
        require_dagster_home()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not names:
        raise click.BadParameter("give at least one queue")
    app.worker_main(
        worker_argv(concurrency=concurrency, queues=names, hostname=hostname, loglevel=get_settings().log_level)
    )


@main.command("logs")
@click.option("--process", "process", required=True, help="Name shown for the process (daemon, webserver...).")
@click.option(
    "--level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="Leave out lines below this level (Dagster's sensor evaluations that found nothing are debug).",
)
def logs(process: str, level: str) -> None:
    """Another process's output on stdin, in the console format (`make dev` shows Dagster's this way)."""
    from dicom_pipeline.logs import render_lines

    colour = sys.stdout.isatty()
    for line in render_lines(sys.stdin, process, level=level, colour=colour):
        click.echo(line)


@main.command("dagster-home")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def dagster_home(folder: Path) -> None:
    """Write a DAGSTER_HOME: PostgreSQL storage if DICOM_PIPELINE_DAGSTER_DATABASE_URL is set, else SQLite."""
    from dicom_pipeline.dagster_home import write_dagster_home

    click.echo(str(write_dagster_home(folder)))


@main.group()
def db() -> None:
    """The metadata database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending Alembic migrations; with DAGSTER_DATABASE_URL set, Dagster's schema too."""
    from dicom_pipeline.db.engine import upgrade_schema

    settings = get_settings()
    upgrade_schema(settings.database_url.get_secret_value())
    click.echo("database schema is up to date")
    if settings.dagster_database_url is not None:
        from dicom_pipeline.dagster_storage import migrate_dagster_schema

        migrate_dagster_schema(settings.dagster_database_url.get_secret_value())
        click.echo("Dagster instance schema is up to date")


@main.group()
def outbox() -> None:
    """The transactional outbox."""


@outbox.command("relay")
def outbox_relay() -> None:
    """Publish every pending outbox event now."""
    from dicom_pipeline.kafka.outbox import publish_pending_events
    from dicom_pipeline.runtime import get_runtime

    runtime = get_runtime()
    result = publish_pending_events(runtime.engine, runtime.producer, raise_on_failure=False)
    click.echo(json.dumps({"published": result.published, "failed": result.failed}))
    if result.failed:
        sys.exit(1)


@main.group()
def schemas() -> None:
    """The events' schemas in the schema registry (DICOM_PIPELINE_SCHEMA_REGISTRY_URL)."""


def _registry() -> tuple[SchemaRegistryClient, Settings]:
    from dicom_pipeline.kafka.contract import registry_client

    settings = get_settings()
    client = registry_client(settings)
    if client is None:
        raise click.ClickException("no schema registry configured: set DICOM_PIPELINE_SCHEMA_REGISTRY_URL")
    return client, settings


@schemas.command("check")
def schemas_check() -> None:
    """Ask the registry whether this release's schemas are compatible with every registered
    version (exit 1 if one is not). Registers nothing."""
    from dicom_pipeline.kafka.contract import check

    client, settings = _registry()
    results = check(client, settings)
    for result in results:
        click.echo(f"{result.subject}: {'ok' if result.compatible else 'REFUSED'}: {result.detail}")
    if not all(r.compatible for r in results):
        sys.exit(1)


@schemas.command("register")
@click.option(
    "--wait", "wait_seconds", type=click.FloatRange(min=0), default=0.0, help="seconds to wait for the registry"
)
def schemas_register(wait_seconds: float) -> None:
    """Register this release's schemas and their compatibility rule (before the release
    starts; the running pipeline never registers). Nothing is registered if one is refused."""
    from dicom_pipeline.kafka.contract import ContractError, register, wait_for_registry

    client, settings = _registry()
    try:
        wait_for_registry(client, wait_seconds)
        results = register(client, settings)
    except ContractError as exc:
        raise click.ClickException(f"refused by the registry, nothing registered: {exc}") from exc
    for result in results:
        click.echo(f"{result.subject}: registered, {result.detail}")


# Commands of installed plugins: the development package (`devtools/`, installed by `make`)
# adds `stack` and `seed`; a production install has neither.
for _entry in entry_points(group="dicom_pipeline.commands"):
    main.add_command(_entry.load(), name=_entry.name)


if __name__ == "__main__":
    main()
