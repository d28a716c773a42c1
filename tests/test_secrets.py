"""No credential leaves the environment: not into files, logs, the store, MLflow, YAML or the image.

A local pipeline (kfp.local, every step a subprocess) runs against the real S3 and MLflow
servers with recognisable credentials in the environment: the S3 server's own key pair
(so they are really used) and fake MLflow basic-auth credentials (sent to a server that
ignores them). Afterwards every produced file, every object under the run's S3 prefix,
every MLflow artifact, param and tag of the run, registered model tags, what the run
printed, the compiled pipeline YAML and the Dockerfile and manifests are searched for them.
A second check scans the shipped sources for anything shaped like a cloud credential.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pipeline_checks import small_spec
from servers import ACCESS_KEY, SECRET_KEY

from prednas.pipeline.local import run_local

ROOT = Path(__file__).parents[1]
MLFLOW_USER, MLFLOW_PASSWORD = "prednas-fake-user-5b1d", "prednas-fake-mlflow-password-7c1e9a"
SECRETS = (ACCESS_KEY, SECRET_KEY, MLFLOW_USER, MLFLOW_PASSWORD)
CREDENTIAL_SHAPES = [
    re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(rb"-----BEGIN (?:RSA |EC |OPENSSH )?PRIVATE KEY-----"),
    re.compile(rb"(?i)(?:aws_secret_access_key|secretaccesskey|mlflow_tracking_password)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{16,}"),
    re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
]


def leaks(name: str, data: bytes) -> list[str]:
    """``name: secret`` for each test credential found in ``data``."""
    return [f"{name}: {secret}" for secret in SECRETS if secret.encode() in data]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory, mlflow_server, s3_server) -> dict:
    """One small pipeline on the real servers, credentials only in the environment; what it left behind."""
    import uuid

    root = tmp_path_factory.mktemp("secrets")
    prefix = f"secrets-{uuid.uuid4().hex[:8]}"
    env = {**s3_server.env, "MLFLOW_TRACKING_USERNAME": MLFLOW_USER, "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORD,
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        spec = small_spec(root, tracking_uri=mlflow_server.tracking_uri, store_uri=s3_server.uri(prefix))
        run = run_local(spec, root=root / "runs")
    return {"root": root, "prefix": prefix, "spec": spec, "report": run.report, "log": run.log_path}


@pytest.mark.slow
@pytest.mark.integration
def test_no_credential_in_any_produced_file(pipeline_run: dict) -> None:
    paths = files_under(pipeline_run["root"])
    assert pipeline_run["log"] in paths and any(p.name == "report" for p in paths)  # the run did leave files
    found = [leak for p in paths for leak in leaks(str(p), p.read_bytes())]
    assert found == []


@pytest.mark.slow
@pytest.mark.integration
def test_no_credential_in_the_store_or_mlflow_artifacts(pipeline_run: dict, s3_server) -> None:
    client = s3_server.client()
    parent = pipeline_run["report"]["parent_run_id"]
    keys = s3_server.keys(pipeline_run["prefix"] + "/")
    artifacts = [k for k in s3_server.keys("mlflow/") if parent in k or "/models/" in k]
    assert any("/triplets/" in k for k in keys) and any(parent in k for k in artifacts)
    found = [leak for k in keys + artifacts
             for leak in leaks(k, client.get_object(Bucket=s3_server.bucket, Key=k)["Body"].read())]
    assert found == []


@pytest.mark.slow
@pytest.mark.integration
def test_no_credential_in_mlflow_params_tags_or_models(pipeline_run: dict) -> None:
    from mlflow import MlflowClient

    spec = pipeline_run["spec"]
    client = MlflowClient(spec.tracking_uri, registry_uri=spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.experiment)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len(runs) == 1 + spec.n + spec.k
    texts = {f"run {r.info.run_id}": repr((r.data.params, r.data.tags, r.info.run_name)) for r in runs}
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name='{model.name}'"):
            texts[f"model {model.name}/{version.version}"] = repr((version.tags, version.source, version.run_id))
    texts["experiment"] = repr((experiment.tags, experiment.artifact_location))
    found = [leak for name, text in texts.items() for leak in leaks(name, text.encode())]
    assert found == []


def test_no_credential_in_the_compiled_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prednas.pipeline.config import load_config
    from prednas.pipeline.remote import compile_package

    for name, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                        ("MLFLOW_TRACKING_USERNAME", MLFLOW_USER), ("MLFLOW_TRACKING_PASSWORD", MLFLOW_PASSWORD)):
        monkeypatch.setenv(name, value)
    compiled = compile_package(load_config(None), tmp_path / "pipeline.yaml").read_bytes()
    committed = (ROOT / "pipelines" / "prednas_pipeline.yaml").read_bytes()
    assert leaks("compiled", compiled) + leaks("committed", committed) == []
    for data in (compiled, committed):
        assert not any(shape.search(data) for shape in CREDENTIAL_SHAPES)
        assert b"AWS_SECRET_ACCESS_KEY" in data  # it is named, as a Secret reference, never valued
        assert re.search(rb"secretName: prednas-s3", data)


def _shipped_files() -> list[Path]:
    """Every tracked file except the tests (which hold the test servers' own fake keys)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listed.decode().split("\0")
            if name and not name.startswith("tests/") and (ROOT / name).is_file()]


def test_no_credential_in_code_configs_image_or_manifests() -> None:
    files = _shipped_files()
    assert any(p.name == "prednas_pipeline.yaml" for p in files)
    found = [f"{p.relative_to(ROOT)}: {shape.pattern[:30]!r}" for p in files for shape in CREDENTIAL_SHAPES
             if shape.search(p.read_bytes())]
    found += [leak for p in files for leak in leaks(str(p.relative_to(ROOT)), p.read_bytes())]
    assert found == []


def test_the_credential_scan_finds_credentials() -> None:
    """Control: each shape matches a credential as it would appear."""
    samples = [b"key = AKIAIOSFODNN7EXAMPLE", b"-----BEGIN RSA PRIVATE KEY-----",
               b"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
               b"token: ghp_" + b"a" * 36]
    assert all(any(shape.search(s) for shape in CREDENTIAL_SHAPES) for s in samples)
