"""A store in an S3 bucket: ``s3://bucket/prefix`` (boto3).

An object is ``<prefix>/<key>`` in the bucket. S3 itself makes a put atomic: an object is
visible only once its single PUT or its multipart upload completes, and a failed multipart
upload is aborted (s3transfer does it). Credentials come from boto3's standard chain; the
endpoint from ``ORCH_S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL`` when set (an S3-compatible
store, or moto's server in the tests), with path-style addressing there.
"""

from __future__ import annotations

import io
import os
from typing import Any, BinaryIO, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .base import (
    CHUNK_BYTES,
    HashingReader,
    ObjectMissing,
    Readable,
    Storage,
    StorageError,
    checked_key,
    checked_range,
)

ENDPOINT_ENVS = ("ORCH_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# Parts of a multipart upload: a stream that cannot seek is buffered a part at a time per
# thread, so these bound the memory a put takes (about 4 x 8 MiB).
TRANSFER = TransferConfig(multipart_threshold=8 * CHUNK_BYTES, multipart_chunksize=8 * CHUNK_BYTES,
                          max_concurrency=4)


def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """An S3 client: the endpoint given, else ORCH_S3_ENDPOINT_URL or AWS_ENDPOINT_URL, else
    AWS's; the region given, else AWS_REGION or AWS_DEFAULT_REGION, else us-east-1."""
    endpoint = endpoint_url or next((os.environ[name] for name in ENDPOINT_ENVS
                                     if os.environ.get(name)), None)
    region = (region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
              or "us-east-1")
    config = Config(
        region_name=region, signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10, read_timeout=60, user_agent_extra="orchestration",
        # Another endpoint (an S3-compatible store, an emulator) seldom serves bucket names
        # as host names.
        s3={"addressing_style": "path"} if endpoint else {},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


class S3Storage(Storage):
    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None):
        if not bucket:
            raise StorageError("an S3 store needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else s3_client()

    def __repr__(self) -> str:
        return f"S3Storage('s3://{self.bucket}/{self.prefix}')"

    def object_key(self, key: str) -> str:
        """The S3 key of the object ``key``; BadKey for a key no store accepts."""
        checked_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, fileobj: Readable) -> tuple[int, str]:
        reader = HashingReader(fileobj)
        name = self.object_key(key)
        try:
            # A reader that cannot seek: s3transfer reads it once, in order, a part at a time.
            self.client.upload_fileobj(reader, self.bucket, name, Config=TRANSFER)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"s3://{self.bucket}/{name}: {exc}") from exc
        return reader.size, reader.sha256

    def open(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        checked_range(start, end)
        name = self.object_key(key)
        if end == start:  # an empty range: S3 has no words for it
            if self.stat(key) is None:
                raise ObjectMissing(f"no object {key!r}")
            return io.BytesIO(b"")
        asked = {} if start == 0 and end is None else {
            "Range": f"bytes={start}-{'' if end is None else end - 1}"}
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=name, **asked)
        except ClientError as exc:
            code = _code(exc)
            if code in MISSING_CODES:
                raise ObjectMissing(f"no object {key!r}") from None
            if code == "InvalidRange":  # from past its end: no bytes, as a file reads
                return io.BytesIO(b"")
            raise StorageError(f"s3://{self.bucket}/{name}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"s3://{self.bucket}/{name}: {exc}") from exc
        return cast(BinaryIO, answer["Body"])

    def stat(self, key: str) -> int | None:
        name = self.object_key(key)
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=name)["ContentLength"])
        except ClientError as exc:
            if _code(exc) in MISSING_CODES:
                return None
            raise StorageError(f"s3://{self.bucket}/{name}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"s3://{self.bucket}/{name}: {exc}") from exc

    def delete(self, key: str) -> None:
        name = self.object_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=name)  # none there: no error
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"s3://{self.bucket}/{name}: {exc}") from exc

    def url(self, key: str, expires_s: int) -> str | None:
        """A presigned GET of the object, good for ``expires_s`` seconds."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.object_key(key)},
            ExpiresIn=int(expires_s))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
