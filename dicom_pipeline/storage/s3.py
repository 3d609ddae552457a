"""S3-compatible store (AWS S3, MinIO, Ceph...): a single PUT is atomic; identical objects skipped."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dicom_pipeline.errors import StorageError
from dicom_pipeline.storage.keys import study_prefix, validate_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

SHA256_METADATA = "sha256"


class S3RawStore:
    backend = "s3"

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None, region: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60),
        )

    def _object_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str = "") -> str:
        base = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{base}/{key}" if key else base

    def sha256_of(self, key: str) -> str | None:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"cannot read s3 object {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 unreachable: {exc}") from exc
        return cast(dict[str, Any], head.get("Metadata", {})).get(SHA256_METADATA)

    def put(self, key: str, source: Path, sha256: str) -> bool:
        if self.sha256_of(key) == sha256:
            return False
        try:
            # upload_file streams from disk and switches to multipart for large files.
            self._client.upload_file(
                str(source),
                self.bucket,
                self._object_key(key),
                ExtraArgs={"Metadata": {SHA256_METADATA: sha256}, "ContentType": "application/dicom"},
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"cannot store s3 object {key}: {exc}") from exc
        return True

    def delete_study(self, study_uid: str) -> int:
        prefix = f"{self.prefix}/{study_prefix(study_uid)}" if self.prefix else study_prefix(study_uid)
        removed = 0
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys: list[ObjectIdentifierTypeDef] = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:  # at most 1000 per page, the limit of one DeleteObjects call
                    self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                    removed += len(keys)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"cannot delete s3 objects of {study_uid}: {exc}") from exc
        return removed

    def open(self, key: str) -> BinaryIO:
        response = self._client.get_object(Bucket=self.bucket, Key=self._object_key(key))
        return cast(BinaryIO, response["Body"])
