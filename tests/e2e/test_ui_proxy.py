"""The UI only the team can reach: Debian's nginx with compose's proxy configuration
(deploy/nginx/ui.conf, its upstreams and ports pointed at the local stack) in front of a
real Dagster webserver and webhook.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from dicom_pipeline_dev.stack.prerequisites import ensure_debian_package

from dicom_pipeline.settings import Settings
from tests.e2e.system import System, free_port, http_status, running_system, wait_for

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "ui.conf"
USER, PASSWORD = "alice", "correct horse battery staple"


@dataclass(frozen=True)
class Proxy:
    ui: str
    webhook: str


@pytest.fixture(scope="module")
def system(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(stack_settings, Path(tmp_path_factory.mktemp("proxy-system")), sensor=False) as system:
        system.start_dagster(daemon=False, workers=0)
        system.start_webhook()
        yield system


@pytest.fixture(scope="module")
def proxy(stack_settings: Settings, system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    ensure_debian_package("nginx", present=shutil.which("nginx") is not None)
    home = tmp_path_factory.mktemp("nginx")
    hashed = subprocess.run(
        ["openssl", "passwd", "-apr1", "-stdin"], input=PASSWORD, capture_output=True, text=True, check=True
    ).stdout.strip()
    htpasswd = home / "ui.htpasswd"
    htpasswd.write_text(f"{USER}:{hashed}\n")
    ui_port, webhook_port = free_port(), free_port()
    # Compose's file, with the addresses compose's network would give replaced by the stack's.
    conf = (
        CONFIG.read_text()
        .replace("/run/secrets/ui_htpasswd", str(htpasswd))
        .replace("http://dagster-webserver:3000", f"http://127.0.0.1:{stack_settings.dagster_port}")
        .replace("http://webhook:8000", f"http://127.0.0.1:{stack_settings.webhook_port}")
        .replace("listen 3000;", f"listen 127.0.0.1:{ui_port};")
        .replace("listen 8000;", f"listen 127.0.0.1:{webhook_port};")
    )
    assert "dagster-webserver" not in conf.split("#")[0] and str(htpasswd) in conf
    (home / "ui.conf").write_text(conf)
    (home / "nginx.conf").write_text(
        # Workers as this test's user: they read the htpasswd file in its private folder.
        f"""daemon off;
{"user root;" if os.geteuid() == 0 else ""}
pid {home}/nginx.pid;
error_log {home}/error.log;
events {{}}
http {{
    access_log {home}/access.log;
    client_body_temp_path {home}/body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;
    include {home}/ui.conf;
}}
"""
    )
    process = subprocess.Popen(
        ["nginx", "-p", str(home), "-c", str(home / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    proxy = Proxy(f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{webhook_port}")
    try:
        wait_for(lambda: http_status(proxy.ui) is not None, 30, "nginx")
        yield proxy
    finally:
        process.terminate()
        process.wait(30)


def test_the_dagster_ui_asks_for_credentials_and_opens_with_them(proxy: Proxy) -> None:
    refused = requests.get(proxy.ui, timeout=10)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert requests.get(proxy.ui, auth=(USER, "wrong"), timeout=10).status_code == 401

    page = requests.get(proxy.ui, auth=(USER, PASSWORD), timeout=10)
    assert page.status_code == 200 and "Dagster" in page.text
    # What the UI does next: GraphQL, through the proxy, with the same credentials.
    answer = requests.post(
        f"{proxy.ui}/graphql", json={"query": "{ version }"}, auth=(USER, PASSWORD), timeout=30
    ).json()
    assert answer["data"]["version"]
    assert requests.post(f"{proxy.ui}/graphql", json={"query": "{ version }"}, timeout=10).status_code == 401


def test_the_webhooks_docs_ask_for_credentials_and_its_api_keeps_its_token(
    stack_settings: Settings, proxy: Proxy
) -> None:
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert requests.get(proxy.webhook + path, timeout=10).status_code == 401, path
        assert requests.get(proxy.webhook + path, auth=(USER, PASSWORD), timeout=10).status_code == 200, path
    # The API passes through: its callers hold the bearer token, not the team's password.
    assert requests.get(proxy.webhook + "/health", timeout=10).status_code == 200
    token = {"Authorization": f"Bearer {stack_settings.webhook_token.get_secret_value()}"}
    url = f"{proxy.webhook}/api/v1/ingestion/studies/{uuid.uuid4()}"
    without = requests.get(url, timeout=10)
    assert without.status_code == 401 and not without.headers.get("www-authenticate", "").startswith("Basic")
    assert requests.get(url, headers=token, timeout=10).status_code == 404  # the app's answer: no such request
