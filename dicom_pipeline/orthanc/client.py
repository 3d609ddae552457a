"""A typed Orthanc REST client: explicit timeouts, identity encoding, errors split by cause."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool

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


# A transport failure: requests' own, or urllib3's (its transport) from a file read.
TransportError = (requests.RequestException, urllib3.exceptions.HTTPError)


class _PoolSharingAdapter(HTTPAdapter):
    """requests' adapter, also handing out the connection pool it uses for a request (the
    documented use of `get_connection_with_tls_context`: in a subclass)."""

    def pool_for(self, request: requests.PreparedRequest, verify: bool | str | None) -> HTTPConnectionPool:
        pool = self.get_connection_with_tls_context(request, verify)
        if not isinstance(pool, HTTPConnectionPool):  # HTTPS pools are HTTPConnectionPools too
            raise TypeError(f"requests gave a {type(pool).__name__}, not an HTTP connection pool")
        return pool


class OrthancClient:
    """One requests Session per client (keep-alive, one pool shared by the download threads).

    A file is read on the connection pool `Session.get` would use (same connections, same
    TLS verification), its body with `readinto` into one reused buffer, in C. Not through
    `Session.get` itself: preparing, sending and wrapping each request in requests' objects
    cost 0.5 ms more CPU per file (x1.35 of the whole file read; bench/http_client.py,
    bench/RESULTS.md 2026-12-07), and ingestion is CPU-bound. JSON requests, a few per study,
    take the Session's ordinary path."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = (5.0, timeout)
        self._http = requests.Session()
        self._http.headers.update(
            {
                # Basic auth as a header of the Session (not `auth=`): one value for both paths.
                "Authorization": urllib3.make_headers(basic_auth=f"{username}:{password}")["authorization"],
                # Orthanc gzips responses when asked; DICOM pixel data barely compresses, so
                # identity encoding is several times faster for files (see local-services.md).
                "Accept-Encoding": "identity",
            }
        )
        # No proxy or .netrc from the environment: Orthanc is addressed directly.
        self._http.trust_env = False
        # Retrying is the retry policy's decision (it knows which step and how often).
        self._adapter = _PoolSharingAdapter(pool_connections=2, pool_maxsize=32, max_retries=0)
        self._http.mount("http://", self._adapter)
        self._http.mount("https://", self._adapter)
        # What a file read needs of the Session, computed once: its pool's key (a prepared
        # request to Orthanc), its headers, the path Orthanc is served under, its timeouts.
        self._pool_key = self._http.prepare_request(requests.Request("GET", self._base_url))
        self._file_headers = {
            name: value if isinstance(value, str) else value.decode() for name, value in self._http.headers.items()
        }
        self._path_prefix = (urllib3.util.parse_url(self._base_url).path or "").rstrip("/")
        self._file_timeout = urllib3.Timeout(connect=5.0, read=timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> OrthancClient:
        return cls(
            settings.orthanc_url,
            settings.orthanc_username,
            settings.orthanc_password.get_secret_value(),
            settings.orthanc_timeout_seconds,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OrthancClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, self._base_url + path, timeout=self._timeout, **kwargs)
        except TransportError as exc:
            raise OrthancUnavailable(f"Orthanc unreachable for {method} {path}: {type(exc).__name__}") from exc
        _raise_for_status(response.status_code, f"{method} {path}")
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
            # Looked up per file: the pool manager may have replaced a pool since.
            pool = self._adapter.pool_for(self._pool_key, self._http.verify)
            response = pool.urlopen(
                "GET",
                self._path_prefix + path,
                headers=self._file_headers,
                timeout=self._file_timeout,
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=False,
            )
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
