"""The `dicom-pipeline` command (a contract: see README)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dicom_pipeline.settings import get_settings
from dicom_pipeline.stack.errors import StackError

if TYPE_CHECKING:
    from dicom_pipeline.stack.control import Stack


@click.group()
def main() -> None:
    """dicom-pipeline: Orthanc -> PostgreSQL, raw storage and Kafka, on Dagster."""


@main.group()
def stack() -> None:
    """The local real-services stack (Orthanc, PostgreSQL, Kafka)."""


def _stack() -> Stack:
    # Imported here so that commands that do not touch the stack start faster.
    from dicom_pipeline.stack.control import Stack

    return Stack.from_settings(get_settings())


@stack.command("up")
def stack_up() -> None:
    """Install what is missing, start the services and wait until they answer."""
    try:
        _stack().up(report=lambda line: click.echo(line))
    except StackError as exc:
        raise click.ClickException(str(exc)) from None


@stack.command("down")
@click.option("--purge", is_flag=True, help="Also delete the stack's data folder.")
def stack_down(purge: bool) -> None:
    """Stop the processes `stack up` started."""
    _stack().down(purge=purge, report=lambda line: click.echo(line))


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stack_status(as_json: bool) -> None:
    """Show where each service listens and whether it answers."""
    info = _stack().status()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for name, service in info["services"].items():
        state = f"running (pid {service['pid']})" if service["running"] else "stopped"
        click.echo(f"{name:<11} {state}")
    for key in ("orthanc_url", "kafka_bootstrap_servers", "webhook_url", "dagster_url"):
        if key in info:
            click.echo(f"{key:<24} {info[key]}")


def _parse_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form") from None


@main.command()
@click.option("--studies", default=3, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--modalities", default="CT,MR,CR,DX", show_default=True, help="Comma-separated, from CT, MR, CR, DX.")
@click.option("--series", "series_per_study", default=2, show_default=True, type=click.IntRange(1, 100))
@click.option("--instances", "instances_per_series", default=3, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--size", default="512x512", show_default=True, help="ROWSxCOLUMNS of each image.")
@click.option("--date", "dates", multiple=True, help="Study date (YYYY-MM-DD); repeat for several.")
@click.option("--date-from", default=None, help="Random study dates from this day...")
@click.option("--date-to", default=None, help="...to this day.")
@click.option("--charsets", default="ISO_IR 192,ISO_IR 100", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same studies.")
@click.option("--via", type=click.Choice(["rest", "cstore"]), default="rest", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def seed(
    studies: int,
    modalities: str,
    series_per_study: int,
    instances_per_series: int,
    size: str,
    dates: tuple[str, ...],
    date_from: str | None,
    date_to: str | None,
    charsets: str,
    seed: int,
    via: str,
    as_json: bool,
) -> None:
    """Generate synthetic, valid DICOM studies and send them to Orthanc."""
    from dicom_pipeline.seed.runner import seed_studies
    from dicom_pipeline.seed.synth import NAMES_BY_CHARSET, SOP_CLASS_BY_MODALITY, SeedPlan, plan_studies

    modality_list = tuple(m.strip().upper() for m in modalities.split(",") if m.strip())
    unknown = [m for m in modality_list if m not in SOP_CLASS_BY_MODALITY]
    if unknown or not modality_list:
        raise click.BadParameter(f"unknown modality {unknown}; choose from {sorted(SOP_CLASS_BY_MODALITY)}")
    charset_list = tuple(c.strip() for c in charsets.split(",") if c.strip())
    bad = [c for c in charset_list if c not in NAMES_BY_CHARSET]
    if bad or not charset_list:
        raise click.BadParameter(f"unsupported charset {bad}; choose from {sorted(NAMES_BY_CHARSET)}")
    try:
        rows, columns = (int(part) for part in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"--size {size!r} must look like 512x512") from None
    plan = SeedPlan(
        studies=studies,
        modalities=modality_list,
        series_per_study=series_per_study,
        instances_per_series=instances_per_series,
        rows=rows,
        columns=columns,
        dates=tuple(_parse_date(d) for d in dates),
        date_from=_parse_date(date_from) if date_from else None,
        date_to=_parse_date(date_to) if date_to else None,
        charsets=charset_list,
        seed=seed,
    )
    total = sum(s.series_count * s.instances_per_series for s in plan_studies(plan))
    # The bar goes to stderr and only on a terminal, so --json output stays clean.
    with click.progressbar(length=total, label="seeding", file=sys.stderr) as bar:
        seeded = seed_studies(
            get_settings(), plan, via="cstore" if via == "cstore" else "rest", on_instance=lambda: bar.update(1)
        )
    if as_json:
        click.echo(json.dumps({"studies": [asdict(s) for s in seeded]}, indent=2))
    else:
        for study in seeded:
            click.echo(
                f"{study.orthanc_id}  {study.study_instance_uid}  {study.modality} {study.study_date} "
                f"{study.series} series, {study.instances} instances"
            )


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
    from dicom_pipeline.domain.identifiers import validate_uid
    from dicom_pipeline.ingestion.replay import replay_events
    from dicom_pipeline.runtime import get_runtime

    if study_uid is not None:
        study_uid = validate_uid(study_uid, "--study")
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
    """Apply pending Alembic migrations."""
    from dicom_pipeline.db.engine import upgrade_schema

    upgrade_schema(get_settings().database_url.get_secret_value())
    click.echo("database schema is up to date")


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


if __name__ == "__main__":
    main()
