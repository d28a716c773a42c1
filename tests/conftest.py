"""Shared fixtures: the MLflow test environment and real servers for integration tests.

Server fixtures (session-scoped, started on first use, torn down at the end; all on
127.0.0.1 free ports; see ``tests/integration/servers.py``):

- ``s3_server`` -> ``S3Server``: SeaweedFS ``weed mini`` with bucket ``.bucket``; attributes
  ``endpoint`` (``http://127.0.0.1:PORT``), ``bucket``, ``env`` (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``,
  ``MLFLOW_S3_ENDPOINT_URL``), ``uri(prefix)`` -> ``s3://bucket/prefix``, ``keys(prefix)``
  (object keys in the bucket), ``client()`` (a boto3 client), ``stop()``/``start()``.
- ``pg_server`` -> ``PostgresServer``: ``url(db)`` gives ``postgresql+psycopg2://prednas@127.0.0.1:PORT/db``.
- ``mlflow_server`` -> ``MlflowServer``: ``tracking_uri`` (``http://127.0.0.1:PORT``),
  ``artifacts_uri`` (``s3://bucket/mlflow``, where run artifacts land), ``s3`` (the
  ``S3Server``), ``stop()``/``start()`` (same port, same database).
- ``s3_env`` (function): sets ``s3_server.env`` in ``os.environ`` for the test and yields the
  server, so ``open_store("s3://...")`` and MLflow's S3 client find the endpoint.
- ``s3_prefix`` (function): a fresh ``test-<hex>`` prefix so tests never see each other's objects.
- ``fault_s3_server`` (function): a private ``S3Server`` that the test may stop and restart.

Every test runs with ``MLFLOW_DISABLE_TELEMETRY=true`` and no inherited ``MLFLOW_RUN_ID``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "integration"))
from servers import MlflowServer, PostgresServer, S3Server


@pytest.fixture(autouse=True)
def _mlflow_test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A running SeaweedFS S3 server shared by the session."""
    server = S3Server(tmp_path_factory.mktemp("s3"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def fault_s3_server(tmp_path: Path) -> Iterator[S3Server]:
    """A private S3 server for one test, free to be stopped and restarted."""
    server = S3Server(tmp_path / "s3")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL cluster shared by the session."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, pg_server: PostgresServer,
                  s3_server: S3Server) -> Iterator[MlflowServer]:
    """A running MLflow tracking server (PostgreSQL store, S3 artifacts) shared by the session."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), pg_server, s3_server)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The session S3 server, with its endpoint and credentials in the environment."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
def s3_prefix() -> str:
    """A prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}"
