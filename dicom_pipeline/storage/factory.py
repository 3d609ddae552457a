"""Choose the raw store from one URL: file:///path or s3://bucket/prefix."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from dicom_pipeline.settings import Settings
from dicom_pipeline.storage.base import RawStore
from dicom_pipeline.storage.local import LocalRawStore
from dicom_pipeline.storage.s3 import S3RawStore


def raw_store_from_url(url: str, *, s3_endpoint_url: str | None = None, s3_region: str = "us-east-1") -> RawStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if not parsed.path.startswith("/"):
            raise ValueError(f"storage URL {url!r} must be file:///absolute/path")
        return LocalRawStore(Path(parsed.path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"storage URL {url!r} must name a bucket: s3://bucket/prefix")
        return S3RawStore(parsed.netloc, parsed.path, s3_endpoint_url, s3_region)
    raise ValueError(f"storage URL {url!r}: scheme must be file:// or s3://")


def raw_store_from_settings(settings: Settings) -> RawStore:
    return raw_store_from_url(
        settings.storage_url, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region
    )
