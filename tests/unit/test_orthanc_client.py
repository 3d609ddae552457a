"""The Orthanc client's transport against a local HTTP server that misbehaves on purpose (a
real Orthanc cannot be made to cut a file short): what it sends, what it keeps alive, and
which error each failure becomes."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dicom_pipeline.errors import OrthancNotFound, OrthancUnavailable
from dicom_pipeline.orthanc.client import OrthancClient

INSTANCE = "6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c"
BODY = bytes(range(256)) * 4096  # 1 MiB: more than one read of the client's buffer


@dataclass
class Seen:
    connections: set[tuple[str, int]] = field(default_factory=set)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _handler(seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Orthanc

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.connections.add(self.client_address)
            seen.paths.append(self.path)
            self.path = self.path.removeprefix("/orthanc")  # Orthanc behind a reverse proxy's prefix
            seen.headers.append({name.lower(): value for name, value in self.headers.items()})
            if self.path == f"/instances/{INSTANCE}/file":
                self._send(200, BODY)
            elif self.path == "/instances/00000000-00000000-00000000-00000000-00000000/file":
                # Content-Length promises the whole file; half comes, then the connection closes.
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY[: len(BODY) // 2])
                self.wfile.flush()
                self.close_connection = True
            elif self.path == "/system":
                self._send(200, b'{"Version": "1.10.1"}')
            elif self.path.startswith("/studies/"):
                self._send(404, b'{"HttpError": "Not Found"}')
            else:
                self._send(500, b"{}")

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture()
def server() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(seen))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("prefix", ["", "/orthanc"])
def test_files_are_read_whole_over_one_kept_alive_connection_with_auth_and_identity_encoding(
    server: tuple[str, Seen], tmp_path: Path, prefix: str
) -> None:
    url, seen = server
    with OrthancClient(url + prefix + "/", "reader", "s3cret") as client:
        first = client.download_instance(INSTANCE, tmp_path / "a.dcm")
        second = client.download_instance(INSTANCE, tmp_path / "b.dcm")
        assert client.system()["Version"] == "1.10.1"
    assert first.sha256 == second.sha256 == hashlib.sha256(BODY).hexdigest()
    assert first.size_bytes == len(BODY) and (tmp_path / "b.dcm").read_bytes() == BODY
    # The file reads and the JSON request share the Session's pool: one connection.
    assert len(seen.connections) == 1
    expected_auth = "Basic " + base64.b64encode(b"reader:s3cret").decode()
    assert [h["authorization"] for h in seen.headers] == [expected_auth] * 3
    assert {h["accept-encoding"] for h in seen.headers} == {"identity"}
    assert all(path.startswith(prefix + "/") for path in seen.paths), seen.paths


def test_a_file_cut_short_is_unavailable_and_leaves_no_staged_file(server: tuple[str, Seen], tmp_path: Path) -> None:
    url, _seen = server
    destination = tmp_path / "cut.dcm"
    cut = "00000000-00000000-00000000-00000000-00000000"
    with OrthancClient(url, "reader", "s3cret") as client, pytest.raises(OrthancUnavailable) as raised:
        client.download_instance(cut, destination)
    assert raised.value.instance == cut and cut in str(raised.value)
    assert not destination.exists()


def test_statuses_and_an_unreachable_orthanc_become_the_errors_retries_depend_on(
    server: tuple[str, Seen], tmp_path: Path
) -> None:
    url, _seen = server
    with OrthancClient(url, "reader", "s3cret") as client:
        with pytest.raises(OrthancNotFound):
            client.study(INSTANCE)
        assert client.study_state(INSTANCE) is None
        with pytest.raises(OrthancUnavailable, match="500"):
            client.download_instance("11111111-11111111-11111111-11111111-11111111", tmp_path / "x.dcm")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with OrthancClient(f"http://127.0.0.1:{closed_port}", "reader", "s3cret", timeout=2) as client:
        with pytest.raises(OrthancUnavailable, match="unreachable"):
            client.system()
        with pytest.raises(OrthancUnavailable):
            client.download_instance(INSTANCE, tmp_path / "y.dcm")
    assert not (tmp_path / "y.dcm").exists()
