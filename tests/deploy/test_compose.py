"""docker-compose.yml parses and interpolates (docker-compose 1.29 `config`, no engine needed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "ORTHANC_PASSWORD": "orthanc-secret",
    "WEBHOOK_TOKEN": "t" * 32,
    "REDIS_PASSWORD": "redis-secret",
    "UI_HTPASSWD_FILE": "/etc/dicom-pipeline/ui.htpasswd",
}


def _compose(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: apt-get install -y docker-compose (.ci/run installs it)"
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=REPO,
    )


def test_compose_file_interpolates_with_required_secrets() -> None:
    result = _compose(SECRETS)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {
        "postgres",
        "kafka",
        "orthanc",
        "dagster-code",
        "dagster-webserver",
        "dagster-daemon",
        "webhook",
        "migrate",
        "redis",
        "worker",
        "schema-registry",
        "proxy",
    } <= set(services)
    # Only the proxy is reachable from outside: Dagster's own port is on loopback, the
    # webhook's only behind the proxy.
    published = services["dagster-webserver"]["ports"]
    # docker-compose 1.29 prints a port with a host address in the short form.
    hosts = [str(p.get("host_ip") if isinstance(p, dict) else p) for p in published]
    assert hosts and all(host.startswith("127.0.0.1") for host in hosts), published
    assert "ports" not in services["webhook"]
    assert config["secrets"]["ui_htpasswd"]["file"] == SECRETS["UI_HTPASSWD_FILE"]
    # The worker tier scales (--scale worker=N): nothing pins one container.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["webhook"]["environment"]["DICOM_PIPELINE_WEBHOOK_TOKEN"] == "t" * 32
    assert services["dagster-webserver"]["depends_on"]["dagster-code"]["condition"] == "service_healthy"
    for name in ("postgres", "kafka", "orthanc", "redis", "dagster-code", "dagster-webserver", "webhook"):
        assert "healthcheck" in services[name], name
    # Dagster's processes do not create their schema (should_autocreate_tables: false): the
    # migration job does, before the code server that every Dagster process waits for.
    # Then the events' schemas, before any producer starts.
    migrate = services["migrate"]["command"][-1]
    assert migrate == "dicom-pipeline db upgrade && dicom-pipeline schemas register --wait 180"
    assert services["migrate"]["environment"]["DICOM_PIPELINE_DAGSTER_DATABASE_URL"].endswith("/dagster")
    assert services["dagster-code"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("dagster-webserver", "dagster-daemon", "worker"):
        assert services[name]["depends_on"]["dagster-code"]["condition"] == "service_healthy", name


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_run_without_a_required_secret(missing: str) -> None:
    result = _compose({k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_the_readme_names_every_variable_compose_requires_where_it_says_what_to_export() -> None:
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", (REPO / "docker-compose.yml").read_text()))
    assert required, "compose requires no variable: the pattern no longer matches"
    exports = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("export ")]
    named = {name for line in exports for name in re.findall(r"([A-Z0-9_]+)=", line)}
    assert required <= named, f"compose requires {sorted(required - named)}, which the README does not export"
