"""CPU per instance of the Orthanc client's file reads: the requests client (its Session's
own pool, `readinto`) against the bare urllib3 PoolManager it replaced and against requests'
ordinary path (`Session.get`, with `raw.readinto` or `iter_content`), in one process, passes
alternating, on the same study (#22 item 7).

    python -m bench.http_client [--instances 200] [--passes 5]

Each pass reads every file of the study the way OrthancClient.download_instance does
(request, body into one 1 MiB buffer, sha256, write to a staging file) and, separately,
makes small JSON requests (`/studies/{id}`); the figure is the process's CPU time per
instance or per request, the median of the passes (wall time is noisier on 2 shared cores).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
import urllib3

from bench.common import record, seed_ct_study
from dicom_pipeline.domain.identifiers import validate_orthanc_id
from dicom_pipeline.orthanc.client import CHUNK_SIZE, OrthancClient
from dicom_pipeline.settings import Settings, get_settings

Reader = Callable[[str, Path], int]
BEFORE = "urllib3, a PoolManager of its own (before)"


class Urllib3Baseline:
    """OrthancClient.download_instance before #22, line for line: a PoolManager of its own,
    same headers and timeouts, a 1 MiB buffer per file (dicom_pipeline/orthanc/client.py
    at 96f241d)."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.orthanc_url.rstrip("/")
        auth = f"{settings.orthanc_username}:{settings.orthanc_password.get_secret_value()}"
        self.http = urllib3.PoolManager(
            num_pools=2,
            maxsize=32,
            headers={**urllib3.make_headers(basic_auth=auth), "Accept-Encoding": "identity"},
            timeout=urllib3.Timeout(connect=5.0, read=30.0),
            retries=False,
        )

    def download(self, orthanc_id: str, destination: Path) -> int:
        validate_orthanc_id(orthanc_id)
        digest = hashlib.sha256()
        size = 0
        buffer = memoryview(bytearray(CHUNK_SIZE))
        response = self.http.request(
            "GET", f"{self.base}/instances/{orthanc_id}/file", preload_content=False, decode_content=False
        )
        try:
            with open(destination, "wb") as out:
                while count := response.readinto(buffer):
                    chunk = buffer[:count]
                    digest.update(chunk)
                    out.write(chunk)
                    size += count
        finally:
            response.drain_conn()
            response.release_conn()
        return size

    def study(self, orthanc_id: str) -> object:
        return self.http.request("GET", f"{self.base}/studies/{orthanc_id}").json()


def session_get_download(session: requests.Session, base: str, *, iter_content: bool) -> Reader:
    """A file read through requests' ordinary path, `Session.get(stream=True)`."""

    def download(orthanc_id: str, destination: Path) -> int:
        validate_orthanc_id(orthanc_id)
        digest = hashlib.sha256()
        size = 0
        buffer = memoryview(bytearray(CHUNK_SIZE))
        url = f"{base}/instances/{orthanc_id}/file"
        response = session.get(url, stream=True, timeout=(5.0, 30.0))
        with open(destination, "wb") as out:
            if iter_content:  # the idiomatic way: a new bytes object per chunk
                for chunk in response.iter_content(CHUNK_SIZE):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            else:
                while count := response.raw.readinto(buffer):
                    digest.update(buffer[:count])
                    out.write(buffer[:count])
                    size += count
        # Back to the pool (Response.close would drop a connection whose body requests
        # did not read itself).
        response.raw.drain_conn()
        response.raw.release_conn()
        return size

    return download


def cpu_per_call(calls: list[Callable[[], object]]) -> float:
    """Process CPU seconds per call."""
    started = time.process_time()
    for call in calls:
        call()
    return (time.process_time() - started) / len(calls)


def measure(settings: Settings, instances: int, passes: int, seed: int) -> list[tuple[str, str]]:
    study = seed_ct_study(settings, instances, seed)
    client = OrthancClient.from_settings(settings)
    baseline = Urllib3Baseline(settings)
    ids = [item.orthanc_id for item in client.study_instances(study.orthanc_id)]
    folder = Path(tempfile.mkdtemp(prefix="bench-http-", dir=settings.staging_dir.resolve().parent))
    # The client's own Session (same pool, headers and auth) for requests' ordinary path.
    session = client._http
    base = settings.orthanc_url.rstrip("/")
    readers: dict[str, Reader] = {
        BEFORE: baseline.download,
        # The same reader again: how far apart two identical readers land in this run.
        f"{BEFORE}, again (noise floor)": baseline.download,
        "requests, the Session's pool + readinto (now)": lambda oid, dest: (
            client.download_instance(oid, dest).size_bytes
        ),
        "requests, Session.get + raw.readinto": session_get_download(session, base, iter_content=False),
        "requests, Session.get + iter_content": session_get_download(session, base, iter_content=True),
    }
    json_calls: dict[str, Callable[[], object]] = {
        BEFORE: lambda: baseline.study(study.orthanc_id),
        "requests, Session.get (now)": lambda: client.study(study.orthanc_id),
    }
    files: dict[str, list[float]] = {name: [] for name in readers}
    small: dict[str, list[float]] = {name: [] for name in json_calls}
    try:
        for reader in readers.values():  # warm-up: connections, page cache
            reader(ids[0], folder / "warm.dcm")
        order = list(readers.items())
        for turn in range(passes):
            # Each reader takes each place in the order in turn (what ran just before one
            # changes its figure: the files it overwrote, the page cache).
            for name, reader in order[turn % len(order) :] + order[: turn % len(order)]:
                files[name].append(
                    cpu_per_call([lambda oid=oid, r=reader: r(oid, folder / f"{oid}.dcm") for oid in ids])  # type: ignore[misc]
                )
            for name, call in json_calls.items():
                small[name].append(cpu_per_call([call] * 200))
    finally:
        client.close()
        shutil.rmtree(folder, ignore_errors=True)
    base_file = statistics.median(files[BEFORE])
    base_json = statistics.median(small[BEFORE])
    rows = [("study", f"{instances} CT instances, {study.bytes_total / 1e6:.0f} MB; {passes} passes, median")]
    for name, values in files.items():
        cpu = statistics.median(values)
        rows.append((f"file read, CPU per instance: {name}", f"{cpu * 1e3:.2f} ms (x{cpu / base_file:.2f})"))
    for name, values in small.items():
        cpu = statistics.median(values)
        rows.append((f"JSON request, CPU per request: {name}", f"{cpu * 1e3:.3f} ms (x{cpu / base_json:.2f})"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    rows = measure(get_settings(), args.instances, args.passes, int(time.time()))
    for name, value in rows:
        print(f"{name}: {value}", flush=True)
    record(
        "HTTP client: requests against the urllib3 path it replaced (#22)",
        rows,
        [
            "one process, passes alternating between the clients; ratios against urllib3 of the same run",
            "file read = request, body into one 1 MiB buffer, sha256, write to a staging file",
        ],
    )


if __name__ == "__main__":
    main()
