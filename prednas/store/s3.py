"""The S3 backend (boto3), for AWS S3 and S3-compatible servers (MinIO, SeaweedFS, Ceph).

Endpoint, region and credentials come only from the standard environment: boto3's own chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, instance and web-identity
roles, ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``), falling back to MLflow's
``MLFLOW_S3_ENDPOINT_URL`` for the endpoint so one setting serves both. Nothing is read
from code, configs or the compiled pipeline.

Every object is written by a single ``PutObject``, which S3 makes visible atomically. New
triplets are created with ``If-None-Match: *``, so two writers racing on one key cannot
overwrite each other (the loser gets ``412``); servers that reject conditional writes
(``501``) fall back to a ``HeadObject`` check first. Transient failures are retried by
botocore (``standard`` mode, bounded attempts, exponential backoff with jitter, connect and
read timeouts); ``AWS_RETRY_MODE`` and ``AWS_MAX_ATTEMPTS`` override our defaults. When the
attempts run out the caller gets one line naming the endpoint, the key and the cause.
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prednas.errors import PredNASError
from prednas.store.base import TripletStore

# botocore waits rand(0, 1) * min(0.05 s * 2**i, 20 s) before retry i: 16 attempts ride out
# about a minute of outage on average (~13 s for the first 10, then ~10 s each).
DEFAULT_MAX_ATTEMPTS = 16
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
READ_THREADS = 16
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def endpoint_from_env() -> str | None:
    """The S3 endpoint the environment names, or None for AWS itself."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        if os.environ.get(name):
            return os.environ[name]
    return None


def retry_policy() -> dict[str, Any]:
    """botocore retry settings: our defaults unless ``AWS_RETRY_MODE``/``AWS_MAX_ATTEMPTS`` say otherwise."""
    mode = os.environ.get("AWS_RETRY_MODE", "standard")
    if mode not in ("standard", "adaptive", "legacy"):
        raise PredNASError(f"AWS_RETRY_MODE={mode!r}; expected standard, adaptive or legacy")
    attempts = os.environ.get("AWS_MAX_ATTEMPTS", str(DEFAULT_MAX_ATTEMPTS))
    if not attempts.isdigit() or int(attempts) < 1:
        raise PredNASError(f"AWS_MAX_ATTEMPTS={attempts!r}; expected a positive integer")
    return {"mode": mode, "total_max_attempts": int(attempts)}


def make_client() -> Any:
    """A boto3 S3 client configured from the environment, with bounded retries and timeouts."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise PredNASError("the S3 store needs boto3: pip install 'prednas[s3]'") from None
    endpoint = endpoint_from_env()
    config = Config(retries=retry_policy(), connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                    max_pool_connections=READ_THREADS,
                    s3={"addressing_style": "path"} if endpoint else None)  # S3-compatible servers
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Store(TripletStore):
    """A store under ``s3://bucket/prefix``; checks the bucket is reachable on construction."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        if not BUCKET_RE.match(bucket):
            raise PredNASError(f"bad S3 bucket name {bucket!r}; expected 3-63 lowercase letters, digits, '.' or '-'")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client if client is not None else make_client()
        self.endpoint = self.client.meta.endpoint_url
        self._conditional = True  # does the server honour If-None-Match?
        self._call("HeadBucket", "", lambda: self.client.head_bucket(Bucket=bucket))

    # -- error handling ---------------------------------------------------------------
    def _call(self, op: str, key: str, fn: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as exc:
            raise self._client_error(op, key, exc) from None
        except BotoCoreError as exc:
            raise self._transport_error(op, key, exc) from None

    def _transport_error(self, op: str, key: str, exc: Exception) -> PredNASError:
        from botocore.exceptions import NoCredentialsError, PartialCredentialsError

        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return PredNASError(f"no usable S3 credentials for {self.uri}: set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE / a role)")
        from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

        attempts = self.client.meta.config.retries.get("total_max_attempts", "several")
        reason = {ConnectTimeoutError: "connect timed out", ReadTimeoutError: "read timed out",
                  EndpointConnectionError: "could not connect"}.get(type(exc), str(exc))
        return PredNASError(f"S3 endpoint {self.endpoint} unreachable for {op} {self.uri}/{key} "
                            f"after {attempts} attempts ({reason})")

    def _client_error(self, op: str, key: str, exc: Exception) -> PredNASError:
        code = _code(exc)
        if op == "HeadBucket" and code in ("404", "NoSuchBucket"):
            return PredNASError(f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}; create it first")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return PredNASError(f"S3 refused {op} on {self.uri}/{key} ({code}); check the AWS_* credentials")
        return PredNASError(f"S3 {op} failed on {self.uri}/{key}: {exc}")

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- primitives -------------------------------------------------------------------
    def _put(self, key: str, data: bytes, **extra: Any) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data,
                               ContentType="application/json" if key.endswith(".json") else
                               "application/octet-stream", **extra)

    def _create(self, key: str, data: bytes) -> bool:
        for _ in range(5):
            if not self._conditional:
                if self._exists(key):
                    return False
                self._call("PutObject", key, lambda: self._put(key, data))
                return True
            try:
                self._call("PutObject", key, lambda: self._put_conditional(key, data))
                return True
            except _Conflict as conflict:
                if conflict.code in ("412", "PreconditionFailed"):
                    return False
                if conflict.code in ("501", "NotImplemented"):
                    self._conditional = False
                    continue
                time.sleep(0.2)  # 409: a concurrent conditional write is in flight; ask again
        raise PredNASError(f"S3 PutObject on {self.uri}/{key} kept conflicting with concurrent writers")

    def _put_conditional(self, key: str, data: bytes) -> None:
        from botocore.exceptions import ClientError

        try:
            self._put(key, data, IfNoneMatch="*")
        except ClientError as exc:
            code = _code(exc)
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in ("PreconditionFailed", "NotImplemented", "ConditionalRequestConflict") or \
                    status in ("412", "501", "409"):
                raise _Conflict(code if code else status) from None
            raise

    def _write(self, key: str, data: bytes) -> None:
        self._call("PutObject", key, lambda: self._put(key, data))

    def _read(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        def get() -> bytes | None:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()
            except ClientError as exc:
                if _code(exc) in ("NoSuchKey", "404"):
                    return None
                raise

        return self._call("GetObject", key, get)

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._full(key))
                return True
            except ClientError as exc:
                if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                    return False
                raise

        return self._call("HeadObject", key, head)

    def _read_many(self, keys: list[str]) -> list[bytes | None]:
        if len(keys) < 2:
            return [self._read(k) for k in keys]
        with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(keys))) as pool:
            return list(pool.map(self._read, keys))

    def _keys(self, prefix: str) -> list[str]:
        base = self._full(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")

        def listing() -> list[str]:
            keys = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
                keys += [obj["Key"] for obj in page.get("Contents", [])]
            return keys

        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[strip:] for k in self._call("ListObjectsV2", prefix, listing))

    def _delete(self, key: str) -> None:
        self._call("DeleteObject", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._full(key)))


class _Conflict(Exception):
    """A conditional PutObject that the server did not apply (412, 409 or 501)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code
