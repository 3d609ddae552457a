"""A second, private stack comes up from nothing, survives a second `up`, and `down` leaves nothing."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicom_pipeline_dev.stack.control import Stack
from dicom_pipeline_dev.stack.process import port_in_use

from dicom_pipeline.settings import Settings

pytestmark = pytest.mark.integration

OFFSET = 300  # ports well away from the main test stack's


@pytest.fixture()
def private_stack() -> Iterator[Stack]:
    folder = Path(tempfile.mkdtemp(prefix="dp-lifecycle-", dir="/var/tmp"))
    folder.chmod(0o755)
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        stack_dir=folder,
        orthanc_http_port=base.orthanc_http_port + OFFSET,
        orthanc_dicom_port=base.orthanc_dicom_port + OFFSET,
        postgres_port=base.postgres_port + OFFSET,
        kafka_port=base.kafka_port + OFFSET,
        kafka_controller_port=base.kafka_controller_port + OFFSET,
        redis_port=base.redis_port + OFFSET,
        webhook_port=base.webhook_port + OFFSET,
        dagster_port=base.dagster_port + OFFSET,
        schema_registry_port=base.schema_registry_port + OFFSET,
    )
    stack = Stack.from_settings(settings)
    try:
        yield stack
    finally:
        stack.down(purge=True, report=lambda line: None)


def test_stack_comes_up_from_nothing_and_down_leaves_no_process(private_stack: Stack) -> None:
    lines: list[str] = []
    private_stack.up(report=lines.append)
    assert [line.split(":")[0] for line in lines] == ["postgresql", "redis", "orthanc", "kafka", "schema-registry"]
    status = private_stack.status()
    pids = [service["pid"] for service in status["services"].values()]
    assert all(service["running"] for service in status["services"].values())

    again: list[str] = []
    private_stack.up(report=again.append)
    assert all(line.endswith("already running") for line in again)
    assert [s["pid"] for s in private_stack.status()["services"].values()] == pids

    private_stack.down(report=lambda line: None)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"pid {pid} survived stack down"
    settings = private_stack.layout.settings
    ports = (settings.orthanc_http_port, settings.postgres_port, settings.kafka_port, settings.redis_port)
    for port in (*ports, settings.schema_registry_port, settings.schema_registry_port + 1):
        assert not port_in_use(port)
    # Data stays unless --purge.
    assert private_stack.layout.secrets_path.exists()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_port_taken_is_a_one_line_error(private_stack: Stack) -> None:
    import socket

    from dicom_pipeline_dev.stack.errors import StackError

    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", private_stack.layout.settings.postgres_port))
        blocker.listen()
        with pytest.raises(StackError, match=r"port \d+ for PostgreSQL is already taken.*DICOM_PIPELINE_POSTGRES_PORT"):
            private_stack.up(report=lambda line: None)
    assert os.path.exists(private_stack.layout.root)
