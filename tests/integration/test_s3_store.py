"""The S3-compatible backend against a real S3 API server (moto in server mode) on loopback."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from dicom_pipeline.runtime import get_runtime, reset_runtime
from dicom_pipeline.settings import Settings
from dicom_pipeline.storage import raw_store_from_url
from dicom_pipeline.storage.s3 import S3RawStore
from tests.helpers import KafkaTap, ingest, query, seed_one

pytestmark = pytest.mark.integration

KEY = "1.2.3/1.2.3.4/1.2.3.4.5.dcm"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="dicom")
    try:
        yield endpoint
    finally:
        server.stop()


def test_s3_store_round_trip_and_identical_object_not_rewritten(s3_endpoint: str, tmp_path: Path) -> None:
    store = raw_store_from_url("s3://dicom/archive", s3_endpoint_url=s3_endpoint)
    assert isinstance(store, S3RawStore)
    source = tmp_path / "x.dcm"
    source.write_bytes(b"DICM" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()

    assert store.sha256_of(KEY) is None
    assert store.put(KEY, source, digest) is True
    assert store.put(KEY, source, digest) is False
    assert store.sha256_of(KEY) == digest
    with store.open(KEY) as handle:
        assert handle.read() == source.read_bytes()
    assert store.location(KEY) == f"s3://dicom/archive/{KEY}"


def test_study_ingested_into_s3_backend(
    stack_settings: Settings, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, events: KafkaTap
) -> None:
    monkeypatch.setenv("DICOM_PIPELINE_STORAGE_URL", "s3://dicom/studies")
    monkeypatch.setenv("DICOM_PIPELINE_S3_ENDPOINT_URL", s3_endpoint)
    reset_runtime()
    try:
        seeded, spec = seed_one(stack_settings, series=1, instances=2)
        assert ingest(seeded.orthanc_id)["status"] == "created"
        store = get_runtime().raw_store
        for key, sha256 in query(
            "SELECT i.storage_key, i.sha256 FROM instance i JOIN study s ON s.id = i.study_id "
            "WHERE s.study_instance_uid = :uid",
            uid=spec.study_uid,
        ):
            with store.open(key) as handle:
                assert hashlib.sha256(handle.read()).hexdigest() == sha256
        message = events.read(expected=1, key=spec.study_uid)[0]
        assert message.value["storage"] == {"backend": "s3", "location": f"s3://dicom/studies/{spec.study_uid}/"}
    finally:
        monkeypatch.undo()
        reset_runtime()
