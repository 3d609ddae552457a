"""Jaeger all-in-one (in-memory storage): an OpenTelemetry backend for the traces' tests.

Started only on request (`stack up --with-jaeger`, or a test that needs it). Jaeger is a Go
program: the module in devtools/jaeger pins its version (a `tool` of that module, with its
go.sum) and the binary is built once into a cache outside the repository (GOMODCACHE and
GOCACHE hold the rest), as Maven's ~/.m2 holds the Kafka jars. It listens on loopback only:
OTLP over HTTP (DICOM_PIPELINE_JAEGER_OTLP_PORT) and the query API and UI
(DICOM_PIPELINE_JAEGER_QUERY_PORT).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import requests

from dicom_pipeline_dev.stack.errors import StackError
from dicom_pipeline_dev.stack.layout import StackLayout
from dicom_pipeline_dev.stack.process import PidFile, ensure_port_free, start_detached, wait_until

MODULE = Path(__file__).resolve().parents[2] / "jaeger"
PACKAGE = "github.com/jaegertracing/jaeger/cmd/jaeger"
# The version go.mod requires (v1.75.0: the newest release approved on the module proxy here).
VERSION = "v1.75.0"

CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health_port}
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query_port}
    grpc:
      endpoint: 127.0.0.1:{query_grpc_port}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_port}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def binary_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "dicom-pipeline" / f"jaeger-{VERSION}" / "jaeger"


class JaegerService:
    name = "jaeger"

    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout
        settings = layout.settings
        self.otlp_port = settings.jaeger_otlp_port
        self.query_port = settings.jaeger_query_port
        self.dir = layout.root / "jaeger"
        self.config_path = self.dir / "config.yaml"
        self.log = self.dir / "jaeger.log"
        self.pid_file = PidFile(self.dir / "jaeger.pid", "jaeger")

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def install(self) -> None:
        """Build the pinned Jaeger once (minutes the first time; cached afterwards)."""
        binary = binary_path()
        if binary.exists():
            return
        go = shutil.which("go")
        if go is None:
            raise StackError("Jaeger is built from source with Go 1.24+; install Go (https://go.dev/dl/)")
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        result = subprocess.run(
            [go, "build", "-o", str(partial), PACKAGE], cwd=MODULE, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise StackError(f"building Jaeger {VERSION} failed:\n{result.stderr[-2000:]}")
        partial.rename(binary)

    def running_pid(self) -> int | None:
        return self.pid_file.running_pid()

    def start(self) -> None:
        ensure_port_free(self.otlp_port, "Jaeger OTLP", "DICOM_PIPELINE_JAEGER_OTLP_PORT")
        ensure_port_free(self.query_port, "Jaeger query", "DICOM_PIPELINE_JAEGER_QUERY_PORT")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            CONFIG.format(
                otlp_port=self.otlp_port,
                query_port=self.query_port,
                query_grpc_port=self.query_port + 1,
                health_port=self.query_port + 2,
            )
        )
        process = start_detached(
            [str(binary_path()), "--config", str(self.config_path)], self.pid_file, self.log, cwd=self.dir
        )
        wait_until(self.answers, "Jaeger", 60, self.log, process)

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.query_url}/api/services", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> bool:
        return self.pid_file.stop()
