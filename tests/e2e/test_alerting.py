"""A real Prometheus (Debian's 2.42) with the shipped configuration and alert rules, scraping
the webhook's /metrics and Orthanc's metrics on the local stack: every metric and label the
rules use exists, and every rule evaluates without error.

The promtool unit tests (tests/deploy/test_alert_rules.py) prove what the rules decide;
this proves they read series that are really there, so a renamed gauge fails CI.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from dicom_pipeline_dev.stack.prerequisites import ensure_debian_package

from dicom_pipeline.settings import Settings
from tests.e2e.system import System, free_port, http_status, running_system, wait_for

pytestmark = pytest.mark.e2e

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
# Series selectors in the rules: a metric name, and its label matchers if any.
SELECTOR = re.compile(r"\b((?:dicom_pipeline|orthanc)_[a-z_]+|up)\b(\{[^}]*\})?")


@pytest.fixture(scope="module")
def system(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(stack_settings, Path(tmp_path_factory.mktemp("alerting-system")), sensor=False) as system:
        system.start_webhook()
        yield system


@pytest.fixture(scope="module")
def prometheus(stack_settings: Settings, system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shipped prometheus.yml with the stack's targets, and the shipped rules."""
    ensure_debian_package("prometheus", present=shutil.which("prometheus") is not None)
    home = tmp_path_factory.mktemp("prometheus")
    password = home / "orthanc_password"
    password.write_text(stack_settings.orthanc_password.get_secret_value())
    password.chmod(0o600)
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "2s", "evaluation_interval": "2s"}
    config["rule_files"] = [str(DEPLOY / "alerts.yml")]
    targets = {
        "dicom-pipeline": f"127.0.0.1:{stack_settings.webhook_port}",
        "orthanc": f"127.0.0.1:{stack_settings.orthanc_http_port}",
    }
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        if "basic_auth" in job:
            job["basic_auth"] = {"username": stack_settings.orthanc_username, "password_file": str(password)}
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(home / "prometheus.log", "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_status(f"{url}/-/ready") == 200, 60, "Prometheus to be ready")
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    response = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_series_the_alert_rules_read_is_scraped_from_the_stack(prometheus: str) -> None:
    wait_for(
        lambda: all(_query(prometheus, f'up{{job="{job}"}} == 1') for job in ("dicom-pipeline", "orthanc")),
        120,
        "both targets scraped",
    )
    selectors = {match.group(0) for rule in _rules() for match in SELECTOR.finditer(rule["expr"])}
    assert len(selectors) >= 7, selectors  # the rules' inputs, not a regex that found nothing

    def missing() -> list[str]:
        return sorted(s for s in selectors if not _query(prometheus, s))

    # The dependency monitor's first look, and a scrape after it, may take a few seconds.
    try:
        wait_for(lambda: not missing(), 60, "a series for every selector")
    except AssertionError:
        pytest.fail(f"no series for {missing()}")
    # Labels the annotations name exist on their series.
    for rule in _rules():
        for label in re.findall(r"\$labels\.([a-z_]+)", str(rule.get("annotations", {}))):
            metric = SELECTOR.search(rule["expr"])
            assert metric is not None
            assert _query(prometheus, f'{metric.group(1)}{{{label}!=""}}'), (rule["alert"], label)


def test_every_alert_rule_evaluates_without_error(prometheus: str) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules) else None

    rules = wait_for(evaluated, 120, "every rule evaluated once")
    assert isinstance(rules, list)
    assert {rule["name"] for rule in rules} == {rule["alert"] for rule in _rules()}
    assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []
