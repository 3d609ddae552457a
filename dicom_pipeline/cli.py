"""The `dicom-pipeline` command (a contract: see README)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import asdict

import click

from dicom_pipeline.settings import get_settings
from dicom_pipeline.stack.errors import StackError


@click.group()
def main() -> None:
    """dicom-pipeline: Orthanc -> PostgreSQL, raw storage and Kafka, on Dagster."""


@main.group()
def stack() -> None:
    """The local real-services stack (Orthanc, PostgreSQL, Kafka)."""


def _stack():  # type: ignore[no-untyped-def]
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
    from dicom_pipeline.ingestion.run import dagster_instance, ingest_in_process

    instance = dagster_instance()
    failed = 0
    for orthanc_id in orthanc_study_ids:
        summary = ingest_in_process(orthanc_id, correlation_id=correlation_id, instance=instance)
        failed += summary["status"] == "failed"
        click.echo(json.dumps(summary, default=str))
    if failed:
        sys.exit(1)


@main.command()
@click.option("--dry-run", is_flag=True, help="Only list the studies that would be ingested.")
def reconcile(dry_run: bool) -> None:
    """Ingest every Orthanc study missing from the database or changed since its last ingestion."""
    from dicom_pipeline.ingestion.batch import ingest_studies
    from dicom_pipeline.ingestion.reconcile import find_stale_studies
    from dicom_pipeline.runtime import get_runtime

    runtime = get_runtime()
    stale = list(find_stale_studies(runtime))
    if dry_run:
        for study in stale:
            click.echo(json.dumps({"orthanc_id": study.orthanc_id, "reason": study.reason}))
        return
    report = ingest_studies(
        runtime,
        [s.orthanc_id for s in stale],
        trigger="reconcile",
        run_id=None,
        on_result=lambda r: click.echo(
            json.dumps({"orthanc_id": r.orthanc_id, "status": r.status, "error": r.error}), err=True
        ),
    )
    click.echo(json.dumps({"found": len(stale), **report.as_dict()}))
    if report.failures:
        sys.exit(1)


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
