"""HTTP for the development tools, the tests and the benchmarks: requests, the client the
runtime uses (dicom_pipeline/orthanc/client.py), with the two things a Session lacks for
talking to one service over and over: its base URL and a default timeout."""

from __future__ import annotations

from typing import Any

import requests


class ServiceSession(requests.Session):
    """A Session bound to one service: `get("/system")` means `<base_url>/system`, and every
    request has a timeout (requests' own default is to wait forever)."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.auth = auth
        self.headers.update(headers or {})
        # Local services only: no proxy or .netrc credentials from the environment.
        self.trust_env = False

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        target = url.decode() if isinstance(url, bytes) else url
        if target.startswith("/"):
            target = self.base_url + target
        return super().request(method, target, *args, **kwargs)
