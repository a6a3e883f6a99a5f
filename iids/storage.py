"""One storage configuration for everything: a local path or an S3 bucket.

The same settings build the pyarrow filesystem (Ray Data reads and writes, Ray Train
checkpoints) and the boto3 client (model bundles, manifests). Nothing else in iids builds a
filesystem or an S3 client. Credentials come from the usual AWS sources (environment,
shared credentials file, instance role); an endpoint override points both at an
S3-compatible store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

logger = logging.getLogger(__name__)


class StorageError(RuntimeError):
    """A storage operation failed; the message names the operation, bucket and key."""


@dataclass(frozen=True)
class Storage:
    """Where data, checkpoints and bundles live.

    Attributes:
        endpoint_override: `http://host:port` of an S3-compatible store, or None for AWS.
        region: the S3 region, or None for the SDK's default.
        connect_timeout_s: how long to wait for a connection to the store.
        request_timeout_s: how long to wait for a reply to one request.
        max_attempts: tries per request, the first included, before an error.
    """

    endpoint_override: str | None = None
    region: str | None = None
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 60.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.connect_timeout_s <= 0 or self.request_timeout_s <= 0:
            raise ValueError(
                "connect_timeout_s and request_timeout_s must be > 0 seconds, got "
                f"{self.connect_timeout_s} and {self.request_timeout_s}"
            )
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def __getstate__(self) -> dict[str, Any]:
        # Ray ships a Storage to its workers: leave the clients behind (a boto3 client
        # cannot be pickled) and let each process build its own from its environment.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # -- building the two clients ------------------------------------------------------

    @cached_property
    def _s3fs(self) -> pafs.S3FileSystem:
        kwargs: dict[str, Any] = {}
        if self.endpoint_override:
            parsed = urlparse(self.endpoint_override)
            kwargs["endpoint_override"] = parsed.netloc or parsed.path
            kwargs["scheme"] = parsed.scheme or "http"
        if self.region:
            kwargs["region"] = self.region
        kwargs["connect_timeout"] = self.connect_timeout_s
        kwargs["request_timeout"] = self.request_timeout_s
        kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(self.max_attempts)
        key, secret = (
            os.environ.get("AWS_ACCESS_KEY_ID"),
            os.environ.get("AWS_SECRET_ACCESS_KEY"),
        )
        if key and secret:
            kwargs["access_key"] = key
            kwargs["secret_key"] = secret
        return pafs.S3FileSystem(**kwargs)

    @cached_property
    def s3_client(self) -> Any:
        """A boto3 S3 client with this configuration's endpoint and region."""
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.request_timeout_s,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
        )
        # A session of its own resolves the credentials now, as the pyarrow filesystem
        # does; boto3's shared default session keeps the first ones it found.
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_override,
            region_name=self.region,
            config=config,
        )

    def filesystem(self, uri: str) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem for `uri` and the path inside it."""
        if is_s3(uri):
            return self._s3fs, uri.removeprefix("s3://").rstrip("/")
        return pafs.LocalFileSystem(), os.path.abspath(uri)

    # -- small objects: manifests, reports, bundle files --------------------------------

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write a whole object (a local file is written to a temporary name, renamed)."""
        if is_s3(uri):
            bucket, key = split_s3(uri)
            with self._errors("put", uri):
                self.s3_client.put_object(Bucket=bucket, Key=key, Body=data)
            return
        os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
        tmp = f"{uri}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, uri)

    def read_bytes(self, uri: str) -> bytes:
        """Read a whole object.

        Raises:
            FileNotFoundError: there is no such object.
            StorageError: the store refused the read.
        """
        if is_s3(uri):
            bucket, key = split_s3(uri)
            with self._errors("get", uri):
                return self.s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        with open(uri, "rb") as f:
            return f.read()

    def write_json(self, uri: str, obj: Any) -> None:
        self.write_bytes(uri, json.dumps(obj, indent=2, sort_keys=False).encode())

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_bytes(uri))

    def exists(self, uri: str) -> bool:
        fs, path = self.filesystem(uri)
        with self._errors("stat", uri):
            return fs.get_file_info(path).type != pafs.FileType.NotFound

    def delete_dir(self, uri: str) -> None:
        """Delete a directory (prefix) and everything under it, if it exists."""
        fs, path = self.filesystem(uri)
        with self._errors("delete", uri):
            if fs.get_file_info(path).type != pafs.FileType.NotFound:
                fs.delete_dir(path)

    def move_dir(self, src_uri: str, dst_uri: str) -> None:
        """Publish a fully written directory at `dst_uri`, replacing what was there.

        Local directories are renamed (atomic on one filesystem). On S3 the objects are
        copied, then the source is deleted: readers that honour `_SUCCESS` markers see
        either the old or the new contents.
        """
        fs, src = self.filesystem(src_uri)
        _, dst = self.filesystem(dst_uri)
        with self._errors("move", dst_uri):
            if isinstance(fs, pafs.LocalFileSystem):
                if os.path.exists(dst):
                    old = f"{dst}.old-{os.getpid()}"
                    os.replace(dst, old)
                    os.replace(src, dst)
                    pafs.LocalFileSystem().delete_dir(old)
                else:
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    os.replace(src, dst)
                return
            if fs.get_file_info(dst).type != pafs.FileType.NotFound:
                fs.delete_dir(dst)
            pafs.copy_files(src, dst, source_filesystem=fs, destination_filesystem=fs)
            fs.delete_dir(src)

    def upload_dir(self, local_dir: str, uri: str) -> None:
        """Copy a local directory to `uri` (local or S3)."""
        fs, path = self.filesystem(uri)
        with self._errors("upload", uri):
            fs.create_dir(path, recursive=True)
            pafs.copy_files(
                local_dir,
                path,
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=fs,
            )

    @contextlib.contextmanager
    def _errors(self, operation: str, uri: str) -> Iterator[None]:
        """Turn store errors into one error naming the operation, bucket and key."""
        try:
            yield
        except FileNotFoundError:
            raise
        except Exception as exc:  # botocore and pyarrow raise many kinds
            if not is_s3(uri):
                raise
            if _is_not_found(exc):
                raise FileNotFoundError(f"{uri}: no such object ({operation})") from exc
            bucket, key = split_s3(uri)
            endpoint = self.endpoint_override or "AWS S3"
            raise StorageError(
                f"S3 {operation} failed for bucket {bucket!r}, key {key!r} at {endpoint}: "
                f"{exc}. Check that the bucket exists, that AWS_ACCESS_KEY_ID / "
                f"AWS_SECRET_ACCESS_KEY are valid for it, and that the endpoint is reachable."
            ) from exc


def _is_not_found(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("NoSuchKey", "404", "NotFound")


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or an `s3://` URI."""
    out = uri.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out
