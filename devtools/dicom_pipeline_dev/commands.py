"""`dicom-pipeline stack` and `dicom-pipeline seed`: the development commands.

Registered through the `dicom_pipeline.commands` entry point group, so they exist where
this package is installed (development, tests, benchmarks) and nowhere else.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from contextlib import ExitStack
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from dicom_pipeline.settings import get_settings
from dicom_pipeline_dev.stack.errors import StackError

if TYPE_CHECKING:
    from dicom_pipeline_dev.stack.control import Stack


@click.group()
def stack() -> None:
    """The local real-services stack (Orthanc, PostgreSQL, Kafka)."""


def _stack() -> Stack:
    # Imported here so that commands that do not touch the stack start faster.
    from dicom_pipeline_dev.stack.control import Stack

    return Stack.from_settings(get_settings())


@stack.command("up")
@click.option(
    "--with-jaeger", is_flag=True, help="Also Jaeger (in-memory), for OTEL_* traces; built with Go the first time."
)
def stack_up(with_jaeger: bool) -> None:
    """Install what is missing, start the services and wait until they answer."""
    try:
        _stack().up(report=lambda line: click.echo(line), with_jaeger=with_jaeger)
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


@click.command()
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
    from dicom_pipeline_dev.seed.runner import seed_studies
    from dicom_pipeline_dev.seed.synth import NAMES_BY_CHARSET, SOP_CLASS_BY_MODALITY, SeedPlan, plan_studies

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
    # The bar goes to stderr and only on a terminal, so --json output and logs stay clean
    # (click would still print its label once elsewhere).
    with ExitStack() as closing:
        bar_file = sys.stderr if sys.stderr.isatty() else closing.enter_context(open(os.devnull, "w"))
        with click.progressbar(length=total, label="seeding", file=bar_file) as bar:
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
