"""A typed Orthanc REST client: explicit timeouts, identity encoding, errors split by cause."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import HTTPError as TransportError

from dicom_pipeline.domain.identifiers import read_uid, validate_orthanc_id
from dicom_pipeline.errors import OrthancError, OrthancNotFound, OrthancUnavailable, PipelineError
from dicom_pipeline.settings import Settings

CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class OrthancInstance:
    orthanc_id: str
    file_uuid: str | None
    sop_instance_uid: str | None
    file_size: int | None
    parent_series: str | None


@dataclass(frozen=True)
class DownloadedFile:
    sha256: str
    size_bytes: int


class OrthancClient:
    """urllib3, not httpx: a file is read with `readinto` into one reused buffer, in C, where
    httpx parses it in 64 KiB pieces in Python; that was 2.5x the CPU per instance, and
    ingestion is CPU-bound (bench/RESULTS.md, 2026-11-29). Thread-safe: the download
    threads share one connection pool, connections kept alive."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._http = urllib3.PoolManager(
            num_pools=2,
            maxsize=32,
            headers={
                **urllib3.make_headers(basic_auth=f"{username}:{password}"),
                # Orthanc gzips responses when asked; DICOM pixel data barely compresses, so
                # identity encoding is several times faster for files (see local-services.md).
                "Accept-Encoding": "identity",
            },
            timeout=urllib3.Timeout(connect=5.0, read=timeout),
            # Retrying is the retry policy's decision (it knows which step and how often).
            retries=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OrthancClient:
        return cls(
            settings.orthanc_url,
            settings.orthanc_username,
            settings.orthanc_password.get_secret_value(),
            settings.orthanc_timeout_seconds,
        )

    def close(self) -> None:
        self._http.clear()

    def __enter__(self) -> OrthancClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, self._base_url + path, **kwargs)
        except TransportError as exc:
            raise OrthancUnavailable(f"Orthanc unreachable for {method} {path}: {type(exc).__name__}") from exc
        _raise_for_status(response.status, f"{method} {path}")
        try:
            return response.json()
        except ValueError as exc:
            raise OrthancError(f"Orthanc answered {method} {path} with a body that is not JSON") from exc

    def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._request_json("GET", f"{path}?{urlencode(params)}" if params else path)

    def _post_json(self, path: str, body: Any) -> Any:
        return self._request_json("POST", path, json=body)

    def system(self) -> dict[str, Any]:
        result: dict[str, Any] = self._get_json("/system")
        return result

    def study(self, orthanc_id: str) -> dict[str, Any]:
        validate_orthanc_id(orthanc_id)
        result: dict[str, Any] = self._get_json(f"/studies/{orthanc_id}")
        return result

    def study_state(self, orthanc_id: str) -> StudyState | None:
        """What a trigger needs before it creates a run: the Study Instance UID (runs are
        keyed and limited by it), LastUpdate and stability; None when Orthanc has no such
        study. Orthanc being unreachable is raised, not hidden."""
        try:
            return study_state_of(orthanc_id, self.study(orthanc_id))
        except OrthancNotFound:
            return None

    def instance_study_state(self, instance_id: str) -> StudyState | None:
        """The state of the study an instance belongs to (one request); None when Orthanc no
        longer has the instance."""
        validate_orthanc_id(instance_id)
        try:
            study = self._get_json(f"/instances/{instance_id}/study")
        except OrthancNotFound:
            return None
        return study_state_of(str(study.get("ID", "")), study)

    def study_instances(self, orthanc_id: str) -> list[OrthancInstance]:
        validate_orthanc_id(orthanc_id)
        items = self._get_json(f"/studies/{orthanc_id}/instances")
        return [
            OrthancInstance(
                orthanc_id=item["ID"],
                file_uuid=item.get("FileUuid"),
                sop_instance_uid=(item.get("MainDicomTags") or {}).get("SOPInstanceUID"),
                file_size=item.get("FileSize"),
                parent_series=item.get("ParentSeries"),
            )
            for item in items
        ]

    def download_instance(self, orthanc_id: str, destination: Path) -> DownloadedFile:
        """Stream the raw file to disk, hashing as it streams; memory stays at one chunk."""
        validate_orthanc_id(orthanc_id)
        path = f"/instances/{orthanc_id}/file"
        digest = hashlib.sha256()
        size = 0
        buffer = memoryview(bytearray(CHUNK_SIZE))
        try:
            # A body shorter than its Content-Length raises (urllib3 enforces it): a
            # truncated file is never hashed and stored as if whole.
            response = self._http.request("GET", self._base_url + path, preload_content=False, decode_content=False)
            try:
                _raise_for_status(response.status, f"GET {path}")
                with open(destination, "wb") as out:
                    while count := response.readinto(buffer):
                        chunk = buffer[:count]
                        digest.update(chunk)
                        out.write(chunk)
                        size += count
                    # No fsync here: staging is scratch space. The raw store fsyncs the
                    # object (a hard link to this very file) before the version is recorded.
            finally:
                response.drain_conn()
                response.release_conn()
        except TransportError as exc:
            destination.unlink(missing_ok=True)
            raise OrthancUnavailable(
                f"download of instance {orthanc_id} failed: {type(exc).__name__}", instance=orthanc_id
            ) from exc
        return DownloadedFile(sha256=digest.hexdigest(), size_bytes=size)

    def changes(self, since: int, limit: int) -> dict[str, Any]:
        result: dict[str, Any] = self._get_json("/changes", {"since": since, "limit": limit})
        return result

    def last_change(self) -> dict[str, Any]:
        result: dict[str, Any] = self._get_json("/changes", {"last": ""})
        return result

    def studies_page(self, since: int, limit: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get_json("/studies", {"expand": "", "since": since, "limit": limit})
        return result

    def statistics(self) -> dict[str, Any]:
        """Orthanc's totals (CountStudies, CountInstances, ...): one cheap request."""
        result: dict[str, Any] = self._get_json("/statistics")
        return result

    def study_instance_count(self, orthanc_id: str) -> int | None:
        """How many instances Orthanc holds of one study (`/studies/{id}/statistics`), None
        when it holds no such study."""
        try:
            return int(self._get_json(f"/studies/{orthanc_id}/statistics")["CountInstances"])
        except OrthancNotFound:
            return None

    def study_ids(self) -> list[str]:
        """Every study's Orthanc id (ids only: some 50 bytes a study)."""
        result: list[str] = self._get_json("/studies")
        return result

    def series_page(self, since: int, limit: int) -> list[dict[str, Any]]:
        """Expanded series (ParentStudy, Instances), for counting a study's instances."""
        result: list[dict[str, Any]] = self._get_json("/series", {"expand": "", "since": since, "limit": limit})
        return result

    def find_studies(self, query: dict[str, str]) -> list[str]:
        result: list[str] = self._post_json("/tools/find", {"Level": "Study", "Query": query, "Expand": False})
        return result


@dataclass(frozen=True)
class StudyState:
    orthanc_id: str
    # None when Orthanc's value is not a usable UID: the run is keyed by the Orthanc id and
    # its extract step dead-letters the study, naming what is wrong.
    study_uid: str | None
    last_update: str | None
    stable: bool = True


def study_state_of(orthanc_id: str, study: dict[str, Any]) -> StudyState:
    """A study's state from `/studies/{id}` (or an expanded `/studies` page entry)."""
    try:
        study_uid: str | None = read_uid((study.get("MainDicomTags") or {}).get("StudyInstanceUID"), "StudyInstanceUID")
    except PipelineError:
        study_uid = None
    return StudyState(orthanc_id, study_uid, last_update_of(study), bool(study.get("IsStable", True)))


def last_update_of(study: dict[str, Any]) -> str | None:
    """LastUpdate of a study as `/studies/{id}` describes it."""
    value = study.get("LastUpdate")
    return value if isinstance(value, str) else None


def _raise_for_status(status: int, what: str) -> None:
    if status < 400:
        return
    if status >= 500:
        raise OrthancUnavailable(f"Orthanc answered {status} to {what}")
    if status == 404:
        raise OrthancNotFound(f"Orthanc has no such resource ({what} -> 404)")
    raise OrthancError(f"Orthanc refused {what} with HTTP {status}")


@contextmanager
def orthanc_client(settings: Settings) -> Iterator[OrthancClient]:
    client = OrthancClient.from_settings(settings)
    try:
        yield client
    finally:
        client.close()
