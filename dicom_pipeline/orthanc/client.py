"""A typed Orthanc REST client: explicit timeouts, identity encoding, errors split by cause."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dicom_pipeline.domain.identifiers import validate_orthanc_id
from dicom_pipeline.errors import OrthancError, OrthancNotFound, OrthancUnavailable
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
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            auth=(username, password),
            # Orthanc gzips responses when asked; DICOM pixel data barely compresses, so
            # identity encoding is several times faster for files (see local-services.md).
            headers={"Accept-Encoding": "identity"},
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
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
        self._http.close()

    def __enter__(self) -> OrthancClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise OrthancUnavailable(f"Orthanc unreachable for {method} {path}: {type(exc).__name__}") from exc
        _raise_for_status(response, f"{method} {path}")
        return response.json()

    def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._request_json("GET", path, params=params)

    def _post_json(self, path: str, body: Any) -> Any:
        return self._request_json("POST", path, json=body)

    def system(self) -> dict[str, Any]:
        result: dict[str, Any] = self._get_json("/system")
        return result

    def study(self, orthanc_id: str) -> dict[str, Any]:
        validate_orthanc_id(orthanc_id)
        result: dict[str, Any] = self._get_json(f"/studies/{orthanc_id}")
        return result

    def last_update(self, orthanc_id: str, *, stable_only: bool = False) -> str | None:
        """The study's LastUpdate (the state announcements are deduplicated on); None when
        Orthanc has no such study (deleted since), or, with `stable_only`, while it is still
        receiving instances. Orthanc being unreachable is raised, not hidden."""
        try:
            study = self.study(orthanc_id)
        except OrthancNotFound:
            return None
        return last_update_of(study, stable_only=stable_only)

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
        digest = hashlib.sha256()
        size = 0
        try:
            with self._http.stream("GET", f"/instances/{orthanc_id}/file") as response:
                _raise_for_status(response, f"GET /instances/{orthanc_id}/file")
                with open(destination, "wb") as out:
                    for chunk in response.iter_raw(CHUNK_SIZE):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                    # No fsync here: staging is scratch space. The raw store fsyncs the
                    # object (a hard link to this very file) before the version is recorded.
        except httpx.TransportError as exc:
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

    def series_page(self, since: int, limit: int) -> list[dict[str, Any]]:
        """Expanded series (ParentStudy, Instances), for counting a study's instances."""
        result: list[dict[str, Any]] = self._get_json("/series", {"expand": "", "since": since, "limit": limit})
        return result

    def find_studies(self, query: dict[str, str]) -> list[str]:
        result: list[str] = self._post_json("/tools/find", {"Level": "Study", "Query": query, "Expand": False})
        return result


def last_update_of(study: dict[str, Any], *, stable_only: bool = False) -> str | None:
    """LastUpdate of a study as `/studies/{id}` describes it (None while unstable, if asked)."""
    if stable_only and not study.get("IsStable", True):
        return None
    value = study.get("LastUpdate")
    return value if isinstance(value, str) else None


def _raise_for_status(response: httpx.Response, what: str) -> None:
    if response.status_code < 400:
        return
    if response.status_code >= 500:
        raise OrthancUnavailable(f"Orthanc answered {response.status_code} to {what}")
    if response.status_code == 404:
        raise OrthancNotFound(f"Orthanc has no such resource ({what} -> 404)")
    raise OrthancError(f"Orthanc refused {what} with HTTP {response.status_code}")


@contextmanager
def orthanc_client(settings: Settings) -> Iterator[OrthancClient]:
    client = OrthancClient.from_settings(settings)
    try:
        yield client
    finally:
        client.close()
